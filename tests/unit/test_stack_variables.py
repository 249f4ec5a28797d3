"""Every variable the stack file reads is documented in the README: the
hub's in the variable reference, the others (images, ports, the docker
socket...) in the deployment-variables table under "Deploy"."""

import re

from conftest import ROOT
from test_docs import config_variables


def test_stack_file_deployment_variables_are_in_the_readme():
    stack = (ROOT / "docker-compose.swarm.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", stack))
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy"):readme.index("## Variable reference")]
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", deploy, re.M))
    deployment = used - config_variables()
    assert {"DOCKER_SOCKET", "PUBLIC_PORT", "JUPYTERHUB_IMAGE"} <= deployment
    assert deployment <= table, sorted(deployment - table)

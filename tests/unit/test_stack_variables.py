"""Every variable the stack file reads is documented in the variable
reference (docs/reference.md): the hub's under "Hub variables", the others
(images, ports, the docker socket...) in the stack file's table of
"Deployment variables"."""

import re

from conftest import ROOT
from docpages import section
from test_docs import config_variables


def test_stack_file_deployment_variables_are_in_the_reference():
    stack = (ROOT / "docker-compose.swarm.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", stack))
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section("reference", "### The stack file"),
                           re.M))
    deployment = used - config_variables()
    assert {"DOCKER_SOCKET", "PUBLIC_PORT", "JUPYTERHUB_IMAGE"} <= deployment
    assert deployment <= table, sorted(deployment - table)

"""The README's Quick start, run as written on the real swarm: the block's
commands in a copy of the repository (what an operator clones), then what
the text after it says — the admin logs in with the exported password, a
user signs up at /hub/signup, the admin approves them on /hub/authorize, and
the user's server starts.

As written except: the stack's name (the harness's, so its cleanup finds
it), and, with the stand-in images, the Dockerfile's base image and the
proxy's and notebooks' images given in the environment (PROXY_IMAGE,
SPAWNER_NOTEBOOK_IMAGE), as the published ones cannot be pulled here. The
deploy is the block's own `docker stack deploy`, without the harness's
`--resolve-image never`. PUBLIC_PORT is set only when 8000 is taken.
"""

import os
import re
import subprocess

from docpages import code_block, section

from . import swarm
from .conftest import observe, phase
from .deploy import NOTEBOOK_IMAGE, PROXY_IMAGE, Deployment, repository_copy
from .hubclient import start_and_wait
from .swarm import log

NAME = "quinn"
PASSWORD = "a long password of quinn"


def test_the_quick_start_deploys_a_working_hub(tmp_path, e2e_env):
    block = code_block(section("README", "## Quick start"))
    image = re.search(r"^docker build -t (\S+) \.", block, flags=re.M).group(1)
    password = re.search(r"^export AUTH_ADMIN_PASSWORD='([^']+)'", block, flags=re.M).group(1)
    script = re.sub(r"^(docker stack deploy .*) jhub$", rf"\1 {swarm.STACK}", block, flags=re.M)
    assert f"-c docker-compose.swarm.yml {swarm.STACK}" in script, script
    had_image = swarm.docker("image", "inspect", image, check=False).returncode == 0
    swarm.cleanup()
    try:
        with phase("quick start: the README's commands in a fresh copy"):
            copy = repository_copy(tmp_path / "jupyterhub-swarm")
            bindir = tmp_path / "bin"
            bindir.mkdir()
            (bindir / "docker").symlink_to(swarm.DOCKER)
            port = swarm.free_port(8000)
            stand_ins = {"PROXY_IMAGE": PROXY_IMAGE, "SPAWNER_NOTEBOOK_IMAGE": NOTEBOOK_IMAGE or None,
                         "PUBLIC_PORT": port if port != 8000 else None}
            env = {**swarm.deploy_env(stand_ins), "DOCKER_BUILDKIT": "0",
                   "PATH": f"{bindir}:{os.environ['PATH']}"}
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=copy, env=env,
                                  capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            log(f"quick start printed: {proc.stdout[-600:]} {proc.stderr[-600:]}")
            deployed = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"][
                "ContainerSpec"]["Image"]
            assert deployed.split("@")[0] == image, deployed

        with phase("quick start: the hub answers; admin, signup, approval, a server"):
            d = Deployment(port, {"AUTH_ADMIN_PASSWORD": password})
            Deployment.current = d
            try:
                d.wait_healthy()
            except AssertionError:
                log("hub logs:\n" + swarm.hub_logs(100))
                raise
            admin = d.admin_client()
            user = d.client(NAME)
            alert = user.signup(NAME, PASSWORD)
            assert not user.login(NAME, PASSWORD).ok, "logged in before the admin's approval"
            admin.authorize(NAME)
            assert user.login(NAME, PASSWORD).ok
            start_and_wait(user)
            r = user.open_server()
            observe(f"quick start: {image} built and deployed by the README's block, "
                    f"http://<manager>:{port}/hub/login; signup said {alert!r}; after approval "
                    f"{NAME}'s server answered {r.url.split(str(port), 1)[-1]} (HTTP {r.status_code})")
    finally:
        swarm.cleanup()
        if not had_image:
            swarm.docker("image", "rm", image, check=False)

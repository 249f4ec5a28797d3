"""The documented upgrade ("Upgrading this image", docs/administration.md)
on the real swarm: a new release (the Dockerfile's version label and the
stack file's default image moved together, as a `git pull` brings them)
built and deployed with the documented commands replaces the hub while a
user's server keeps running with its files. And why the tag must change: an
image rebuilt under the tag that is deployed, deployed again, changes no
service.

The documented block runs as written in a copy of this repository, except
`git pull` (the copy is the new release), the stack's name, and, with the
stand-in images, the Dockerfile's base image.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

from docpages import code_block, section

from . import swarm
from .conftest import observe, phase
from .deploy import PROJECT_IMAGE, SINGLEUSER_IMAGES, deploy, repository_copy
from .hubclient import start_and_wait
from .swarm import log, wait_for

NAME = "uma"
SERVICE = "jupyter-uma"
RELEASE_A = "jupyterhub-swarm:e2e-release-a"
SETTLE = 10  # seconds to see that a redeploy changed nothing


def version_of(dockerfile):
    return re.search(r'org\.opencontainers\.image\.version="([^"]+)"', dockerfile).group(1)


def documented_upgrade_block():
    return code_block(section("administration", "### Upgrading this image"))


def new_release(tmp, version, next_version):
    """A copy of the repository as the next release would have it."""
    copy = repository_copy(Path(tmp) / "release")
    dockerfile = (copy / "Dockerfile").read_text()
    dockerfile = dockerfile.replace(f'image.version="{version}"', f'image.version="{next_version}"')
    (copy / "Dockerfile").write_text(dockerfile)
    stack = copy / "docker-compose.swarm.yml"
    stack.write_text(stack.read_text().replace(f"jupyterhub-swarm:{version}",
                                               f"jupyterhub-swarm:{next_version}"))
    return copy


def hub_state():
    """(the hub's task template, its image, its running task's id)."""
    service = swarm.service_inspect(swarm.HUB_SERVICE)
    task = swarm.running_task(swarm.HUB_SERVICE)
    template = service["Spec"]["TaskTemplate"]
    return json.dumps(template, sort_keys=True), template["ContainerSpec"]["Image"], task and task["ID"]


def test_the_documented_upgrade_replaces_the_hub_and_keeps_servers(tmp_path):
    version = version_of((swarm.ROOT / "Dockerfile").read_text())
    next_version = re.sub(r"-(\d+)$", lambda m: f"-{int(m.group(1)) + 1}", version)
    swarm.docker("tag", PROJECT_IMAGE, RELEASE_A)
    try:
        with phase("upgrade: the running release, a user's server with a saved file"):
            d = deploy(JUPYTERHUB_IMAGE=RELEASE_A,
                       SPAWNER_NOTEBOOK_IMAGE=SINGLEUSER_IMAGES.get("5.5") or None)
            admin = d.admin_client()
            user = d.client(NAME)
            user.signup(NAME, "a long password 1")
            admin.authorize(NAME)
            assert user.login(NAME, "a long password 1").ok
            start_and_wait(user)
            user.open_server()
            user.put_file("persistence/before.txt", "saved before the upgrade")
            server_task = swarm.running_task(SERVICE)["ID"]
            before = hub_state()

        with phase("upgrade: rebuilt under the same tag and deployed again: nothing changes"):
            rebuilt = tmp_path / "rebuilt"
            rebuilt.mkdir()
            (rebuilt / "Dockerfile").write_text(f"FROM {PROJECT_IMAGE}\nLABEL rebuilt=yes\n")
            swarm.docker("build", "-q", "-t", RELEASE_A, str(rebuilt), env={
                **os.environ, "DOCKER_BUILDKIT": "0"}, timeout=600)
            swarm.stack_deploy(d.env)
            time.sleep(SETTLE)  # swarm would have started replacing the hub by now
            same = hub_state()
            observe(f"upgrade: same tag redeployed, {SETTLE}s later: hub image and task "
                    f"{before[1:]} -> {same[1:]}, task template unchanged: {same[0] == before[0]}")
            assert same == before

        with phase(f"upgrade: the documented commands, release {version} -> {next_version}"):
            copy = new_release(tmp_path, version, next_version)
            script = documented_upgrade_block().replace("git pull\n", "")
            script = re.sub(r"(docker stack deploy .*) jhub$", rf"\1 {swarm.STACK}", script, flags=re.M)
            assert f" {swarm.STACK}" in script and "git pull" not in script, script
            bindir = tmp_path / "bin"
            bindir.mkdir()
            (bindir / "docker").symlink_to(swarm.DOCKER)
            env = {k: v for k, v in d.env.items() if k != "JUPYTERHUB_IMAGE"}
            env = {**swarm.deploy_env(env), "DOCKER_BUILDKIT": "0",
                   "PATH": f"{bindir}:{os.environ['PATH']}"}
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=copy, env=env,
                                  capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

        with phase("upgrade: a new hub from the new tag; the server ran on"):
            def replaced():
                _, image, task = hub_state()
                return image == f"jupyterhub-swarm:{next_version}" and task not in (None, before[2])
            wait_for(replaced, 120, "the hub's service on the new tag with a new task", 1)
            d.wait_healthy()
            api_image = swarm.service_inspect(swarm.DOCKER_API_SERVICE)[
                "Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            assert api_image == f"jupyterhub-swarm:{next_version}", api_image
            try:
                wait_for(lambda: admin.api("GET", f"/users/{NAME}").json()["servers"].get(
                    "", {}).get("ready"), 60, f"the new hub to report {NAME}'s server ready")
            except AssertionError:
                log("hub logs:\n" + swarm.hub_logs(150))
                log(f"user model: {admin.api('GET', f'/users/{NAME}').text[:1000]}")
                log(f"user services: {swarm.user_services()}")
                raise
            assert swarm.running_task(SERVICE)["ID"] == server_task
            assert user.get_file("persistence/before.txt") == "saved before the upgrade"
            observe(f"upgrade: hub {before[1]} -> {hub_state()[1]}; {NAME}'s task {server_task} "
                    f"kept, with its file")
    finally:
        swarm.cleanup()
        swarm.docker("image", "rm", RELEASE_A, f"jupyterhub-swarm:{next_version}", check=False)

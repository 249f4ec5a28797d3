"""The documented env-file workflow (docs/setup.md, "Settings in a file") on
the real stack: one file in docker's --env-file format, holding the
documentation's own example values (read from docs/user-environment.md and
docs/reference.md, set in a copy of example.env), deployed with the
documented command (scripts/with-env-file.sh ... docker stack deploy) and
given to the check with `docker run --env-file`. The hub's service and the check's
container get exactly the same values."""

import json
import secrets
import shlex
import subprocess

from envfile import (SETUP, active_values, documented_command, documented_example_values,
                     env_file_text)

from . import swarm
from .conftest import PROJECT_IMAGE, PROXY_IMAGE, Deployment, phase

DUMP = ["python3", "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def documented_deploy_command(env_file):
    """The deploy line of "Settings in a file" (docs/setup.md), for this
    test's file and stack (and --resolve-image never: the images are local)."""
    words = shlex.split(documented_command(SETUP.read_text(), "scripts/with-env-file.sh my.env"))
    assert words[2:5] == ["docker", "stack", "deploy"], words
    words = [str(env_file) if w == "my.env" else w for w in words]
    words[2] = swarm.DOCKER
    words[-1] = swarm.STACK
    words[5:5] = ["--resolve-image", "never"]
    return words


def test_one_env_file_for_stack_and_check(e2e_env, tmp_path):
    values = documented_example_values()
    port = swarm.free_port(18000)
    deployment = {"JUPYTERHUB_IMAGE": PROJECT_IMAGE, "PROXY_IMAGE": PROXY_IMAGE,
                  "PUBLIC_PORT": str(port), "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32)}
    text = env_file_text({**values, **{k: v for k, v in deployment.items() if v}})
    env_file = tmp_path / "my.env"
    env_file.write_text(text)
    expected = active_values(text)
    assert {k: expected[k] for k in values} == values

    with phase("env file: the documented deploy command"):
        swarm.cleanup()
        proc = subprocess.run(documented_deploy_command(env_file), cwd=str(swarm.ROOT),
                              env=swarm.deploy_env({}), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        d = Deployment(port, expected)
        Deployment.current = d
        try:
            d.wait_healthy()

            spec = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
            hub_env = dict(item.split("=", 1) for item in spec["Env"])
            hub_names = set(hub_env) & set(expected)
            assert set(values) <= hub_names
            assert {k: hub_env[k] for k in hub_names} == {k: expected[k] for k in hub_names}

            with phase("env file: docker run --env-file, the same values"):
                container_env = json.loads(swarm.docker(
                    "run", "--rm", "--env-file", str(env_file), PROJECT_IMAGE, *DUMP).stdout)
                assert {k: container_env.get(k) for k in expected} == expected
                assert {k: container_env[k] for k in hub_names} == {k: hub_env[k] for k in hub_names}

            with phase("env file: the check with --env-file and in the hub agree"):
                check = swarm.docker("run", "--rm", "--env-file", str(env_file), PROJECT_IMAGE,
                                     "jupyterhub-swarm-check", "alice-torch", "bob").stdout
                in_hub = swarm.docker("exec", swarm.hub_container(),
                                      "jupyterhub-swarm-check", "alice-torch", "bob").stdout
                users = check[check.index("\nuser "):]
                assert users == in_hub[in_hub.index("\nuser "):]
                assert "image: my/torch:2" in users and "gpus: 1 x NVIDIA-GPU" in users, users
                for name in values:
                    line = next(line for line in check.splitlines() if line.startswith(name + " |"))
                    assert line == next(line for line in in_hub.splitlines()
                                        if line.startswith(name + " |"))
        finally:
            Deployment.current = None
            swarm.cleanup()

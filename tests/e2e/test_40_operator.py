"""Operator comforts on the real swarm: the configuration check in the image,
secrets from docker secrets (<NAME>_FILE), idle culling that keeps files."""

import secrets as pysecrets
import time

import pytest

from . import swarm
from .conftest import PASSWORD, PROJECT_IMAGE, SETTINGS, deploy, observe, phase
from .hubclient import start_and_wait
from .swarm import log, wait_for

SPAWNER = {k: v for k, v in SETTINGS.items() if k.startswith(("SPAWNER_CPU", "SPAWNER_MEM", "SPAWNER_PULL"))}


def test_config_check_command_in_the_image(e2e_env, tmp_path):
    env_file = tmp_path / "my.env"
    env_file.write_text(
        "SPAWNER_NETWORK_NAME=jupyterhub_network\n"
        "SPAWNER_CONSTRAINTS=node.role==worker\n"
        "SPAWNER_CONSTRAINT_IMAGES=torch:calculation_type==gpu->my/torch:2\n"
        "SPAWNER_CONSTRAINT_WITH_GPUS=torch->1\n"
        "HUB_DB_URL=postgres://jh:Db-S3cret@db:5432/jh\n"
    )
    proc = swarm.docker("run", "--rm", "--env-file", str(env_file), PROJECT_IMAGE,
                        "jupyterhub-swarm-check", "alice-torch", "bob", check=False)
    observe("jupyterhub-swarm-check output:\n" + proc.stdout[-1500:])
    assert proc.returncode == 0, proc.stderr
    assert "Db-S3cret" not in proc.stdout + proc.stderr
    assert "HUB_DB_URL | postgres://jh:***@db:5432/jh | env" in proc.stdout
    assert "SPAWNER_PORT" not in proc.stdout
    alice = proc.stdout.split("user alice-torch:")[1].split("user bob:")[0]
    assert "image: my/torch:2" in alice and "gpus: 1 x NVIDIA-GPU" in alice
    assert "node.role==worker, node.labels.calculation_type==gpu" in alice

    env_file.write_text("SPAWNER_NETWORK_NAME=n\nSPAWNER_CPU_LIMIT=lots\n")
    bad = swarm.docker("run", "--rm", "--env-file", str(env_file), PROJECT_IMAGE,
                       "jupyterhub-swarm-check", check=False)
    assert bad.returncode == 1
    assert "Configuration error: SPAWNER_CPU_LIMIT='lots' is invalid" in bad.stderr


@pytest.fixture(scope="module")
def culling_hub(e2e_env):
    return deploy(HUB_CULL_IDLE_TIMEOUT="20", HUB_CULL_EVERY="5", **SPAWNER)


def test_admin_password_from_a_docker_secret(culling_hub):
    hub = culling_hub
    secret = f"jhe2e-admin-password-{pysecrets.token_hex(4)}"
    value = "From-A-Docker-Secret-1"
    swarm.docker("secret", "create", secret, "-", input_text=value)
    try:
        with phase("operator: hub gets AUTH_ADMIN_PASSWORD_FILE from a swarm secret"):
            swarm.docker("service", "update", "--detach", "--secret-add",
                         f"source={secret},target=admin_password",
                         "--env-add", "AUTH_ADMIN_PASSWORD_FILE=/run/secrets/admin_password",
                         swarm.HUB_SERVICE, timeout=300)
            wait_for(lambda: swarm.running_task(swarm.HUB_SERVICE) and hub.health()
                     and "admin_password" in str(swarm.service_inspect(swarm.HUB_SERVICE)),
                     240, "hub back with the secret")
            wait_for(lambda: hub.client().login("admin", value).ok, 120, "admin login with the secret")
        logs = swarm.hub_logs(100000)
        assert value not in logs
        # the account the first start made (generated password) got the secret's
        assert "Reset the password of admin account 'admin'" in logs
    finally:
        # not detached: returns once the hub without the secret has replaced
        # the one with it, so the next test finds a settled hub
        swarm.docker("service", "update", "--secret-rm", secret,
                     "--env-rm", "AUTH_ADMIN_PASSWORD_FILE", swarm.HUB_SERVICE,
                     check=False, timeout=300)
        wait_for(lambda: swarm.docker("secret", "rm", secret, check=False).returncode == 0,
                 120, f"secret {secret} removable")
        wait_for(hub.health, 240, "hub healthy again")


def test_idle_server_is_culled_and_keeps_its_files(culling_hub):
    hub = culling_hub
    admin = hub.client()
    # the previous test set the secret's password; alone, the generated one
    assert admin.login("admin", "From-A-Docker-Secret-1").ok or \
        admin.login("admin", hub.admin_password()).ok
    user = hub.client()
    user.signup("ivan", PASSWORD)
    admin.authorize("ivan")
    assert user.login("ivan", PASSWORD).ok
    with phase("culling: start, write a file, go idle"):
        start_and_wait(user, "ivan")
        user.open_server("ivan")
        user.put_file("persistence/idle.txt", "kept while idle")
    with phase("culling: the culler stops the idle server"):
        t0 = time.monotonic()
        # only the hub's API is asked: that is not activity of the server
        wait_for(lambda: not user.user_model("ivan").get("servers"), 240, "ivan's server culled", 2)
        observe(f"idle server culled {time.monotonic() - t0:.0f}s after the last request "
                "(HUB_CULL_IDLE_TIMEOUT=20, HUB_CULL_EVERY=5)")
        wait_for(lambda: "jupyter-ivan" not in swarm.user_services(), 60, "service removed")
        assert "idle-culler" in swarm.hub_logs(100000)
    with phase("culling: the files are still there"):
        start_and_wait(user, "ivan")
        user.open_server("ivan")
        assert user.get_file("persistence/idle.txt") == "kept while idle"
    log("culling test done")

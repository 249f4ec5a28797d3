"""An operator's own JupyterHub setting on the real swarm, without a rebuild:
the stack deployed as docs/setup.md says, with docker-compose.extra-config.yml
after the stack file, hands the hub a Python file as a docker config in
HUB_EXTRA_CONFIG_DIR; the hub runs it after its own settings, and the
login page shows the announcement it sets."""

import os
import secrets

import pytest

from . import swarm
from .conftest import Deployment, deploy, observe, phase

EXTRA_COMPOSE = swarm.ROOT / "docker-compose.extra-config.yml"
MOUNTED = "/srv/jupyterhub/jupyterhub_config.d/extra.py"  # the compose file's target


@pytest.fixture(scope="module")
def extra_config_hub(e2e_env, tmp_path_factory):
    """The stack with an extra config file setting a login announcement
    (a fresh text, so no earlier run's page can pass for it)."""
    announcement = f"Maintenance window e2e-{secrets.token_hex(4)}"
    path = tmp_path_factory.mktemp("extra-config") / "announce.py"
    path.write_text(f"c.JupyterHub.template_vars = {{'announcement_login': {announcement!r}}}\n")
    try:
        yield deploy(extra_files=[EXTRA_COMPOSE], JUPYTERHUB_EXTRA_CONFIG=str(path)), announcement
    finally:
        Deployment.current = None
        if os.environ.get("JHSWARM_E2E_KEEP") != "1":
            with phase("teardown"):
                swarm.cleanup()


def test_an_extra_config_file_changes_a_setting(extra_config_hub):
    hub, announcement = extra_config_hub
    with phase("extra config: the login page shows the file's announcement"):
        page = hub.client().get("/hub/login")
        assert page.status_code == 200
        assert announcement in page.text, page.text[-1500:]
        observe(f"extra config: /hub/login shows {announcement!r}")
    logs = swarm.hub_logs(100000)
    assert f"jupyterhub_config: loaded {MOUNTED} (HUB_EXTRA_CONFIG_DIR)" in logs, logs[-2000:]
    with phase("extra config: the check command in the hub's container runs it too"):
        check = swarm.docker("exec", swarm.hub_container(), "jupyterhub-swarm-check", check=False)
        assert check.returncode == 0, check.stderr
        assert f"loaded {MOUNTED}" in check.stdout

"""docker-compose.secrets.yml: the whole stack with no secret in any
environment variable. The proxy's token, the admin password and the
database URL are docker secrets created beforehand (`docker secret create`,
as the file's header says); the proxy reads its token from the file, the
hub all three through the _FILE forms. And without any token the proxy
refuses to start, its API never open."""

import json
import secrets

import pytest

from . import swarm
from .conftest import ADMIN, PROJECT_IMAGE, PROXY_IMAGE, SETTINGS, Deployment, deploy, phase
from .hubclient import start_and_wait
from .swarm import wait_for

SECRETS_FILE = "docker-compose.secrets.yml"
# what a user server needs on this test machine (conftest.SETTINGS)
SPAWN_SETTINGS = {k: SETTINGS[k] for k in (
    "SPAWNER_PULL_POLICY", "SPAWNER_CPU_GUARANTEE", "SPAWNER_MEM_GUARANTEE",
    "SPAWNER_CPU_LIMIT", "SPAWNER_MEM_LIMIT")}
DB_FILE = "from-secret.sqlite"


def remove_secrets(names):
    for name in names:
        swarm.docker("secret", "rm", name, check=False)


@pytest.fixture
def stack_secrets(e2e_env):
    """The three secrets of docker-compose.secrets.yml, with fresh values;
    removed again after the stack."""
    values = {
        "jupyterhub_proxy_token": secrets.token_hex(32),
        "jupyterhub_admin_password": "e2e-" + secrets.token_urlsafe(18),
        "jupyterhub_db_url": f"sqlite:////data/{DB_FILE}",
    }
    swarm.cleanup()
    remove_secrets(values)
    for name, value in values.items():
        swarm.docker("secret", "create", name, "-", input_text=value + "\n")
    try:
        yield values
    finally:
        swarm.cleanup()  # a secret in use cannot be removed
        remove_secrets(values)


def all_services():
    return [swarm.service_inspect(name) for name in swarm.service_names()]


def test_stack_with_secrets_only(stack_secrets):
    token = stack_secrets["jupyterhub_proxy_token"]
    password = stack_secrets["jupyterhub_admin_password"]
    db_url = stack_secrets["jupyterhub_db_url"]

    with phase("secrets: deploy with docker-compose.secrets.yml, no secret variable"):
        d = deploy(extra_files=[SECRETS_FILE], CONFIGPROXY_AUTH_TOKEN=None, **SPAWN_SETTINGS)
        assert not {"CONFIGPROXY_AUTH_TOKEN", "AUTH_ADMIN_PASSWORD", "HUB_DB_URL"} & set(d.env)

    with phase("secrets: admin logs in with the password of the secret"):
        admin = d.client()
        assert admin.login(ADMIN, password).ok

    with phase("secrets: a server spawns and answers through the proxy"):
        model, _ = start_and_wait(admin, ADMIN)
        assert model["servers"][""]["ready"], model
        admin.open_server(ADMIN)
        assert "started" in admin.server_status(ADMIN)
        # the hub talks to the proxy's API with the token of the file
        assert any(path.startswith(f"/user/{ADMIN}") for path in swarm.proxy_routes())

    with phase("secrets: the database is the secret's URL"):
        listing = swarm.docker("exec", swarm.hub_container(), "ls", "/data").stdout.split()
        assert DB_FILE in listing and "jupyterhub.sqlite" not in listing, listing

    with phase("secrets: no service's environment holds a secret"):
        services = all_services()
        names = [s["Spec"]["Name"] for s in services]
        assert {swarm.HUB_SERVICE, swarm.PROXY_SERVICE, f"jupyter-{ADMIN}"} <= set(names), names
        for service in services:
            spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
            env = spec.get("Env") or []
            text = json.dumps(service)
            for what, value in (("token", token), ("password", password), ("DB URL", db_url)):
                assert value not in text, f"{service['Spec']['Name']}: the {what} in its spec"
            if service["Spec"]["Name"] in (swarm.HUB_SERVICE, swarm.PROXY_SERVICE):
                assert "CONFIGPROXY_AUTH_TOKEN=" in env  # empty: the file is the only source
                assert "CONFIGPROXY_AUTH_TOKEN_FILE=/run/secrets/jupyterhub_proxy_token" in env
        hub_env = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        assert "AUTH_ADMIN_PASSWORD_FILE=/run/secrets/jupyterhub_admin_password" in hub_env
        assert "HUB_DB_URL_FILE=/run/secrets/jupyterhub_db_url" in hub_env
        logs = swarm.hub_logs(5000) + service_logs(swarm.PROXY_SERVICE)
        for value in (token, password, db_url):
            assert value not in logs

    with phase("secrets: stop"):
        admin.stop_server(ADMIN)


def service_logs(service):
    proc = swarm.docker("service", "logs", "--raw", service, check=False)
    return proc.stdout + proc.stderr


def test_no_token_no_proxy(e2e_env):
    """Neither CONFIGPROXY_AUTH_TOKEN nor the secrets file: the deploy goes
    through, but the proxy and the hub refuse to start, saying why, and
    nothing answers on the public port."""
    with phase("secrets: deploy without any token"):
        swarm.cleanup()
        env = {"JUPYTERHUB_IMAGE": PROJECT_IMAGE, "PROXY_IMAGE": PROXY_IMAGE,
               "PUBLIC_PORT": swarm.free_port(18000)}
        env = {k: v for k, v in env.items() if v is not None}
        try:
            swarm.stack_deploy(env)
            wait_for(lambda: "no CONFIGPROXY_AUTH_TOKEN" in service_logs(swarm.PROXY_SERVICE), 90,
                     "the proxy's refusal in its log")
            wait_for(lambda: "CONFIGPROXY_AUTH_TOKEN" in service_logs(swarm.HUB_SERVICE), 90,
                     "the hub's refusal in its log")
            assert not Deployment(env["PUBLIC_PORT"], env).health()
        finally:
            swarm.cleanup()

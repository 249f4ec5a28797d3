"""End-to-end harness: the real stack on a real single-node swarm.

Session start: `scripts/env-up.sh` (docker engine, swarm, stand-in images),
the project image built from the project's Dockerfile, leftovers of an
earlier run removed. Then ONE `docker stack deploy` of docker-compose.swarm.yml
with the settings below (`hub` fixture), shared by all e2e modules: every
test uses its own user names, so tests do not see each other's servers.
Teardown removes the stack, every `jupyter-*` service the hub created, the
network, the stack's data volume and the `jupyterhub-user-*` volumes.

    These tests remove ALL `jupyter-*` services and `jupyterhub-user-*`
    volumes of the local engine: run them on a test machine only.

Environment:
  JHSWARM_USE_REAL_IMAGES=1   real upstream images (pulled) instead of the
                              local stand-ins; JHSWARM_E2E_NOTEBOOK_IMAGE
                              picks the notebook image (default: the
                              product's default)
  JHSWARM_ENV_READY=1         skip env-up.sh (scripts/test.sh ran it)
  JHSWARM_E2E_KEEP=1          leave the stack running after the tests
  DOCKER                      docker client to use
"""

import os
import secrets
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import requests

from . import swarm
from .hubclient import HubClient
from .swarm import ROOT, log, wait_for

USE_REAL = os.environ.get("JHSWARM_USE_REAL_IMAGES") == "1"
PROJECT_IMAGE = "jupyterhub-swarm:e2e"
if USE_REAL:
    BASE_IMAGE = None  # the Dockerfile's default
    PROXY_IMAGE = None  # the compose file's default
    NOTEBOOK_IMAGE = os.environ.get("JHSWARM_E2E_NOTEBOOK_IMAGE") or ""
else:
    BASE_IMAGE = "jhswarm-standin/jupyterhub:5.5.4"
    PROXY_IMAGE = "jhswarm-standin/jupyterhub:5.5.4"  # has configurable-http-proxy
    NOTEBOOK_IMAGE = "jhswarm-standin/notebook:5.5.4"
PRODUCT_DEFAULT_NOTEBOOK = "jupyter/base-notebook:notebook-6.5.4"
# Second and third names of the notebook image, for the suffix rules.
GPU_IMAGE = "jhswarm-standin/notebook:gpu"
BASE_RULE_IMAGE = "jhswarm-standin/notebook:base"
MISSING_IMAGE = "jhswarm-missing/image:none"  # exists nowhere, no registry has it
GPU_LABEL = ("calculation_type", "gpu")
OWN_LABEL_MARKER = "org.jhswarm.e2e.added-calculation_type"

PASSWORD = "e2e-Secret-pass"
ADMIN = "admin"  # AUTH_ADMIN_USER's default

# The one configuration all e2e modules share.
SPAWN_CMD = ["start-singleuser.sh", "--ServerApp.custom_display_url=http://e2e.invalid/a b"]
SETTINGS = {
    "SPAWNER_PULL_POLICY": "ifnotpresent" if USE_REAL else "never",
    "SPAWNER_CPU_GUARANTEE": "0.1",
    "SPAWNER_MEM_GUARANTEE": "64M",
    "SPAWNER_CPU_LIMIT": "1",
    "SPAWNER_MEM_LIMIT": "1G",
    "SPAWNER_ENVIRONMENT": "E2E_A:1;E2E_URL:http://x:1/y",
    "SPAWNER_SPAWN_CMD": "start-singleuser.sh '--ServerApp.custom_display_url=http://e2e.invalid/a b'",
    "SPAWNER_CONSTRAINTS": "node.role==manager",
    "SPAWNER_CONSTRAINT_IMAGES": (
        f"gpu:calculation_type==gpu->{GPU_IMAGE};"
        f"base:calculation_type==gpu->{BASE_RULE_IMAGE};"
        "nowhere:calculation_type==e2e-no-such-node->" + (NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK)
        + f";missing->{MISSING_IMAGE}"  # an image no node has (test_08, test_50)
    ),
    "SPAWNER_CONSTRAINT_WITH_GPUS": "gpu->1",
    # a GPU that never comes: fail after 20s instead of the default 60s
    "SPAWNER_RESOURCE_WAIT": "20",
}


# -- phase timing ---------------------------------------------------------------

PHASES = []


@contextmanager
def phase(name):
    """Time a phase of a test; printed now and in the summary at the end."""
    t0 = time.monotonic()
    log(f"--> {name}")
    try:
        yield
    finally:
        took = time.monotonic() - t0
        PHASES.append((name, took))
        log(f"<-- {name}: {took:.1f}s")


OBSERVATIONS = []


def observe(text):
    """Record what a user or operator would see (printed at the end)."""
    log(text)
    OBSERVATIONS.append(text)


def pytest_terminal_summary(terminalreporter):
    if OBSERVATIONS:
        terminalreporter.section("e2e observations")
        for text in OBSERVATIONS:
            terminalreporter.write_line(text)
    if PHASES:
        terminalreporter.section("e2e phase durations")
        for name, took in PHASES:
            terminalreporter.write_line(f"{took:7.1f}s  {name}")


def pytest_collection_modifyitems(session, config, items):
    """Tests on the shared deployment (fixture `hub`) run first: a test that
    calls deploy() for a configuration of its own replaces that deployment."""
    def own_deployment(item):
        return "e2e" in item.nodeid and "hub" not in getattr(item, "fixturenames", ())
    items.sort(key=own_deployment)  # stable: file order is kept otherwise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "e2e" in item.nodeid and Deployment.current is not None:
        try:
            report.sections.append(("hub logs (docker logs, tail)", swarm.hub_logs(200)))
        except Exception as e:  # never hide the real failure
            report.sections.append(("hub logs", f"could not read: {e}"))


# -- environment and deployment ------------------------------------------------


def _run(cmd, what, timeout, env=None):
    t0 = time.monotonic()
    log(f"{what}: {' '.join(cmd)}")
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed ({proc.returncode}) after {time.monotonic() - t0:.0f}s:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    log(f"{what}: done in {time.monotonic() - t0:.1f}s")
    return proc


LOCK_FILE = "/run/jhswarm-e2e.lock"
_lock = None  # the open lock file while this process holds the lock


def hold_engine_lock():
    """One e2e session per engine at a time: the stack, the network name and
    the per-user service names are fixed, and cleanup removes them all.
    Taken once per process (by the e2e_lock fixture or the first deploy())
    and held until the process ends."""
    global _lock
    if _lock is not None:
        return
    import fcntl
    lock = open(LOCK_FILE, "w")
    t0 = time.monotonic()
    fcntl.flock(lock, fcntl.LOCK_EX)
    if time.monotonic() - t0 > 1:
        log(f"waited {time.monotonic() - t0:.0f}s for another e2e session")
    _lock = lock


@pytest.fixture(scope="session")
def e2e_lock():
    hold_engine_lock()


@pytest.fixture(scope="session")
def e2e_env(e2e_lock):
    """Engine, swarm and images ready; no leftovers of an earlier run."""
    if os.environ.get("JHSWARM_ENV_READY") != "1":
        with phase("env-up.sh"):
            _run(["bash", "scripts/env-up.sh"], "env-up.sh", timeout=3600)
    with phase("build project image"):
        build = ["docker", "build", "-t", PROJECT_IMAGE, "."]
        if BASE_IMAGE:
            build[2:2] = ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
        build[0] = swarm.DOCKER
        _run(build, "docker build (classic builder)", timeout=1800, env={"DOCKER_BUILDKIT": "0"})
    notebook = NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK
    if USE_REAL:
        with phase("pull real images"):
            for image in (notebook, "quay.io/jupyterhub/configurable-http-proxy:4.6.3"):
                _run([swarm.DOCKER, "pull", image], f"pull {image}", timeout=1800)
    for tag in (GPU_IMAGE, BASE_RULE_IMAGE):
        swarm.docker("tag", notebook, tag)
    with phase("clean leftovers"):
        swarm.cleanup()
    yield
    if os.environ.get("JHSWARM_E2E_KEEP") != "1":
        for tag in (GPU_IMAGE, BASE_RULE_IMAGE):
            swarm.docker("image", "rm", tag, check=False)


@dataclass
class Deployment:
    """A deployed stack: where it answers and what it was deployed with."""

    port: int
    env: dict
    deployed_at: float = field(default_factory=time.monotonic)
    tls_ca: str = None  # with HUB_SSL_*: the CA file that signed the proxy's cert
    # where the proxy's host-mode port answers (swarm.target() changes it)
    address: str = field(default_factory=lambda: swarm.PUBLIC_ADDRESS)

    current = None  # the Deployment now running, for the failure hook

    @property
    def base_url(self):
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://{self.address}:{self.port}"

    def client(self, name=None):
        client = HubClient(self.base_url, name)
        if self.tls_ca:
            # requests lets REQUESTS_CA_BUNDLE from the environment override
            # a session's verify: ignore the environment for this browser
            client.session.trust_env = False
            client.session.verify = self.tls_ca
        return client

    def health(self):
        try:
            r = requests.get(self.base_url + "/hub/health", timeout=5,
                             verify=self.tls_ca or True)
        except requests.RequestException:
            return False
        return r.status_code == 200

    def wait_healthy(self, timeout=180):
        t0 = time.monotonic()

        def healthy():
            if self.health():
                return True
            failed = [
                t for t in swarm.service_tasks(swarm.HUB_SERVICE)
                if t["Status"]["State"] in ("failed", "rejected")
            ]
            if len(failed) >= 2:
                raise AssertionError(
                    f"the hub failed {len(failed)} times: "
                    f"{[t['Status'].get('Err') for t in failed]}"
                )
            return False

        wait_for(healthy, timeout, f"{self.base_url}/hub/health through the proxy", 1)
        return time.monotonic() - t0


def deploy(tls_ca=None, **overrides):
    """Deploy the stack from scratch with the e2e defaults plus `overrides`
    (None removes a variable); wait until /hub/health answers through the
    proxy (over HTTPS, trusting `tls_ca`, when given). Returns the Deployment."""
    if swarm.HOST is None:  # the local engine; tests/e2e_cluster locks its own
        hold_engine_lock()
    swarm.cleanup()
    port = swarm.free_port(18000)
    env = {
        "JUPYTERHUB_IMAGE": PROJECT_IMAGE,
        "PROXY_IMAGE": PROXY_IMAGE,
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
        "PUBLIC_PORT": port,
        "SPAWNER_NOTEBOOK_IMAGE": NOTEBOOK_IMAGE or None,
    }
    env.update(overrides)
    env = {k: v for k, v in env.items() if v is not None}
    with phase("docker stack deploy"):
        swarm.stack_deploy(env)
    check_interpolation(env)
    d = Deployment(port, env, tls_ca=tls_ca)
    Deployment.current = d
    with phase("hub healthy through the proxy"):
        try:
            d.wait_healthy()
        except AssertionError:
            log("hub logs:\n" + swarm.hub_logs(100))
            raise
    return d


def check_interpolation(env):
    """The services got exactly the values we deployed with: the compose
    file's ${VAR...} expressions must pass them through unchanged."""
    for service in (swarm.HUB_SERVICE, swarm.PROXY_SERVICE):
        spec = swarm.service_inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
        got = dict(item.split("=", 1) for item in spec.get("Env") or [])
        wrong = {
            k: (got[k], str(v)) for k, v in env.items() if k in got and got[k] != str(v)
        }
        assert not wrong, f"{service}: compose interpolation changed (got, sent): {wrong}"
    assert "CONFIGPROXY_AUTH_TOKEN" in got


@pytest.fixture(scope="session")
def hub(e2e_env):
    """The shared deployment (SETTINGS), with the node labelled for the
    `gpu`/`base` suffix rules."""
    labels = swarm.node_labels()
    # a label this harness added (marker) is ours to remove, even if an
    # earlier run died before its teardown; an operator's label is not
    ours = GPU_LABEL[0] not in labels or OWN_LABEL_MARKER in labels
    if ours:
        swarm.label_node(OWN_LABEL_MARKER, "1")
    swarm.label_node(*GPU_LABEL)
    try:
        yield deploy(**SETTINGS)
    finally:
        Deployment.current = None
        if os.environ.get("JHSWARM_E2E_KEEP") == "1":
            log(f"JHSWARM_E2E_KEEP=1: leaving stack {swarm.STACK} running")
        else:
            with phase("teardown"):
                swarm.cleanup()
                if ours:
                    swarm.unlabel_node(GPU_LABEL[0])
                    swarm.unlabel_node(OWN_LABEL_MARKER)


@pytest.fixture(scope="session")
def admin(hub):
    """The admin's browser, signed up and logged in. Keeps what the hub
    answered (`signup_message`, `login_result`) for the accounts test."""
    client = hub.client()
    client.signup_message = client.signup(ADMIN, PASSWORD)
    client.login_result = client.login(ADMIN, PASSWORD)
    assert client.login_result.ok, f"admin login failed: {client.login_result}"
    return client


@pytest.fixture(scope="session")
def make_user(hub, admin):
    """make_user(name) -> a logged-in HubClient of a new, approved user."""

    def make(name, password=PASSWORD):
        client = hub.client()
        client.signup(name, password)
        admin.authorize(name)
        result = client.login(name, password)
        assert result.ok, f"login of {name} failed: {result}"
        return client

    return make

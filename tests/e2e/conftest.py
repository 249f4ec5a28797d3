"""End-to-end harness: the real stack on a real single-node swarm.

Session start: `scripts/env-up.sh` (docker engine, swarm, stand-in images),
the project image built from the project's Dockerfile, leftovers of an
earlier run removed. Then ONE `docker stack deploy` of docker-compose.swarm.yml
with the settings below (`hub` fixture), shared by all e2e modules: every
test uses its own user names, so tests do not see each other's servers.
Teardown removes the stack, every `jupyter-*` service the hub created, the
network, the stack's data volume and the `jupyterhub-user-*` volumes.
The fixtures and hooks are here; the engine lock, deploy() and Deployment
are in deploy.py (bench/ uses them too).

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

import pytest

# deploy.py is the harness's deployment machinery, a plain module shared with
# bench/: its asserts report like this file's
pytest.register_assert_rewrite(f"{__package__}.deploy")

from . import swarm  # noqa: E402
from .deploy import (  # noqa: E402
    ADMIN, BASE_IMAGE, NOTEBOOK_IMAGE, PHASES, PRODUCT_DEFAULT_NOTEBOOK, PROJECT_IMAGE,
    SINGLEUSER_IMAGES, USE_REAL, Deployment, deploy, hold_engine_lock, phase,
)
# the tests import these from here too
from .deploy import PROXY_IMAGE, check_interpolation  # noqa: E402,F401
from .swarm import ROOT, log  # noqa: E402

# Second and third names of the notebook image, for the suffix rules.
GPU_IMAGE = "jhswarm-standin/notebook:gpu"
BASE_RULE_IMAGE = "jhswarm-standin/notebook:base"
IMAGE_MARKER = "image-{}.txt"  # in the notebook directory of GPU_IMAGE (gpu), BASE_RULE_IMAGE (base)
MISSING_IMAGE = "jhswarm-missing/image:none"  # exists nowhere, no registry has it
GPU_LABEL = ("calculation_type", "gpu")
OWN_LABEL_MARKER = "org.jhswarm.e2e.added-calculation_type"

PASSWORD = "e2e-Secret-pass"
METRICS_TOKEN = secrets.token_hex(32)

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
        # one rule per jupyterhub-singleuser release (test_11): su40, su55, su61
        + "".join(f";su{v.replace('.', '')}->{image}" for v, image in SINGLEUSER_IMAGES.items())
    ),
    "SPAWNER_CONSTRAINT_WITH_GPUS": "gpu->1",
    # profiles (test_16), each for a group: users in no group (every other
    # test's) get no form and the plain settings, as without profiles
    "SPAWNER_PROFILES": f"pcpu->{BASE_RULE_IMAGE};pgpu:calculation_type==gpu->{GPU_IMAGE}",
    "SPAWNER_PROFILE_GPUS": "pgpu->1",
    "SPAWNER_PROFILE_NAMES": "pcpu->Plain CPU;pgpu->GPU <1 card> & CUDA",
    "SPAWNER_PROFILE_GROUPS": "pcpu->lab;pgpu->gpu",
    # a GPU that never comes: fail after 20s instead of the default 60s
    "SPAWNER_RESOURCE_WAIT": "20",
    # the scrape token of /hub/metrics (test_21_metrics), new every session
    "HUB_METRICS_TOKEN": METRICS_TOKEN,
}


# -- observations and phase durations (deploy.phase) ------------------------------

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


# -- environment and the shared deployment ------------------------------------


def _run(cmd, what, timeout, env=None, stdin=None):
    t0 = time.monotonic()
    log(f"{what}: {' '.join(cmd)}")
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=stdin,
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
    # the rules' and profiles' images: the notebook image with a file that
    # says which one a server runs (the browser test looks for it)
    for tag in (GPU_IMAGE, BASE_RULE_IMAGE):
        marker = IMAGE_MARKER.format(tag.rsplit(":", 1)[1])
        _run([swarm.DOCKER, "build", "-q", "-t", tag, "-"], f"build {tag}", timeout=600,
             env={"DOCKER_BUILDKIT": "0"},
             stdin=f"FROM {notebook}\nRUN touch /home/jovyan/work/{marker}\n")
    with phase("clean leftovers"):
        swarm.cleanup()
    yield
    if os.environ.get("JHSWARM_E2E_KEEP") != "1":
        for tag in (GPU_IMAGE, BASE_RULE_IMAGE):
            swarm.docker("image", "rm", tag, check=False)


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
    """The admin's browser, logged in with the password the hub generated at
    its first start (/data/admin_password; the shared deployment sets no
    AUTH_ADMIN_PASSWORD). Keeps what the hub answered to a sign-up attempt
    under the admin's name and to the login (`signup_message`,
    `login_result`) for the accounts test."""
    client = hub.client()
    client.signup_message = client.signup(ADMIN, PASSWORD)
    client.login_result = client.login(ADMIN, hub.admin_password())
    assert client.login_result.ok, f"admin login failed: {client.login_result}"
    return client


@pytest.fixture(scope="session")
def make_user(hub, admin):
    """make_user(name) -> a logged-in HubClient of a new, approved user."""

    def make(name, password=PASSWORD):
        return hub.approved_user(name, password, admin)

    return make

"""Deployment machinery of the end-to-end harness, shared by the pytest
fixtures (conftest.py, tests/e2e_cluster) and the benchmarks (bench/).

A plain module (no pytest): the engine lock, `deploy()` of the project's
stack and the `Deployment` it returns, phase timing, and the removal of
services, volumes and networks by name (prefix) with the wait until their
containers are gone. The docker CLI helpers are swarm.py's.
"""

import fcntl
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from . import swarm
from .hubclient import HubClient
from .swarm import log, wait_for

USE_REAL = os.environ.get("JHSWARM_USE_REAL_IMAGES") == "1"
PROJECT_IMAGE = "jupyterhub-swarm:e2e"
if USE_REAL:
    BASE_IMAGE = None  # the Dockerfile's default
    PROXY_IMAGE = None  # the compose file's default
    NOTEBOOK_IMAGE = os.environ.get("JHSWARM_E2E_NOTEBOOK_IMAGE") or ""
else:
    BASE_IMAGE = "jhswarm-standin/jupyterhub:6.1.1"
    PROXY_IMAGE = "jhswarm-standin/jupyterhub:6.1.1"  # has configurable-http-proxy
    NOTEBOOK_IMAGE = "jhswarm-standin/notebook:6.1.1"
PRODUCT_DEFAULT_NOTEBOOK = "jupyter/base-notebook:notebook-6.5.4"
# user images by jupyterhub-singleuser release: 4.0 as in the spec's default
# image, 5.5 as in images made for JupyterHub 5, 6.1 as current ones
# (stand-ins: scripts/env-up.sh; real: the spec's default for 4.0 only)
if USE_REAL:
    SINGLEUSER_IMAGES = {"4.0": PRODUCT_DEFAULT_NOTEBOOK}
else:
    SINGLEUSER_IMAGES = {"4.0": "jhswarm-standin/notebook:4.0.2",
                         "5.5": "jhswarm-standin/notebook:5.5.4",
                         "6.1": "jhswarm-standin/notebook:6.1.1"}

ADMIN = "admin"  # AUTH_ADMIN_USER's default


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


# -- the engine lock ----------------------------------------------------------------

LOCK_FILE = "/run/jhswarm-e2e.lock"
_lock = None  # the open lock file while this process holds the lock


def file_lock(path, who):
    """Open `path` and take an exclusive flock on it, waiting for another
    `who` that holds it (said in the log after a second). Returns the open
    file: closing it (or the end of the process) releases the lock."""
    lock = open(path, "w")
    t0 = time.monotonic()
    fcntl.flock(lock, fcntl.LOCK_EX)
    if time.monotonic() - t0 > 1:
        log(f"waited {time.monotonic() - t0:.0f}s for another {who}")
    return lock


def hold_engine_lock():
    """One e2e session per engine at a time: the stack, the network name and
    the per-user service names are fixed, and cleanup removes them all.
    Taken once per process (by the e2e_lock fixture, the first deploy() or a
    benchmark) and held until the process ends or release_engine_lock()."""
    global _lock
    if _lock is not None:
        return
    _lock = file_lock(LOCK_FILE, "e2e session")


def release_engine_lock():
    """Let another e2e session (or benchmark) have the engine."""
    global _lock
    if _lock is not None:
        _lock.close()
        _lock = None


# -- the deployment ------------------------------------------------------------------


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

    def admin_password(self, name=ADMIN):
        """AUTH_ADMIN_PASSWORD if the deployment sets it, else the password
        the hub generated at its first start, read as docs/setup.md says:
        docker exec <the hub's container> cat /data/admin_password."""
        if self.env.get("AUTH_ADMIN_PASSWORD"):
            return self.env["AUTH_ADMIN_PASSWORD"]
        text = swarm.docker("exec", swarm.hub_container(), "cat", "/data/admin_password").stdout
        found = dict(line.split(" ", 1) for line in text.splitlines()
                     if line and not line.startswith("#"))
        assert name in found, f"/data/admin_password has no line for {name}"
        return found[name].strip()

    def admin_client(self, name=ADMIN):
        """A logged-in browser of the admin account the hub made at start."""
        client = self.client(name)
        result = client.login(name, self.admin_password(name))
        assert result.ok, f"admin login failed: {result}"
        return client

    def approved_user(self, name, password, admin=None):
        """A logged-in browser of a new account: signed up at /hub/signup and
        approved by `admin` (a logged-in admin's client; the admin account's
        when None)."""
        admin = admin or self.admin_client()
        client = self.client(name)
        client.signup(name, password)
        admin.authorize(name)
        result = client.login(name, password)
        assert result.ok, f"login of {name} failed: {result}"
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


def deploy(tls_ca=None, extra_files=(), wait=True, resolve_image="never", **overrides):
    """Deploy the stack from scratch with the e2e defaults plus `overrides`
    (None removes a variable), merging the compose files `extra_files` after
    the stack file (swarm.stack_deploy, with its `resolve_image`: None lets
    the CLI resolve registry images to digests); wait until /hub/health
    answers through the proxy (over HTTPS, trusting `tls_ca`, when given),
    unless not `wait` (a hub that cannot start). Returns the Deployment."""
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
        # the pre-pull jobs (jupyter-prepull--*) would be among the jupyter-*
        # services and containers other tests count; test_27_prepull.py turns it on
        "SPAWNER_PREPULL": "false",
    }
    env.update(overrides)
    env = {k: v for k, v in env.items() if v is not None}
    with phase("docker stack deploy"):
        swarm.stack_deploy(env, extra_files, resolve_image)
    check_interpolation(env)
    d = Deployment(port, env, tls_ca=tls_ca)
    Deployment.current = d
    if not wait:
        return d
    with phase("hub healthy through the proxy"):
        try:
            d.wait_healthy()
        except AssertionError:
            log("hub logs:\n" + swarm.hub_logs(100))
            raise
    # the hub answers before the stack's docker-api may: a spawn refused in
    # that moment found JupyterHub's clean-up stop waiting for docker, and
    # the spawn page said "stopping" instead of the refusal (test_19)
    # (and servers reach the hub's API through hub-relay)
    with phase("docker-api and hub-relay running"):
        for service in (swarm.DOCKER_API_SERVICE, swarm.RELAY_SERVICE):
            wait_for(lambda: swarm.running_task(service), 120,
                     f"a running task of {service}", 0.5)
    return d


def repository_copy(dest):
    """A copy of the repository's product files at `dest` (what an operator
    clones, without the tests, benchmarks and docs), its Dockerfile's base
    image swapped for the stand-in unless the real images are in use: for
    running the documented build and deploy commands as written."""
    copy = Path(dest)
    shutil.copytree(swarm.ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "__pycache__", "tests", "bench", "docs"))
    if BASE_IMAGE:  # the stand-in for quay.io/jupyterhub/jupyterhub
        dockerfile = copy / "Dockerfile"
        dockerfile.write_text(re.sub(r"^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={BASE_IMAGE}",
                                     dockerfile.read_text(), flags=re.M))
    return copy


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


# -- removal by name ---------------------------------------------------------------------
# `names` below: a prefix (a str), or the exact names (a set, list, ...).


def _matches(names):
    if isinstance(names, str):
        return lambda name: name.startswith(names)
    return set(names).__contains__


def services_gone(names):
    """True when none of these services exists and no container of one is left."""
    match = _matches(names)
    if any(match(name) for name in swarm.service_names()):
        return False
    return not any(match(service) for _, service in swarm.containers())


def wait_services_gone(names, timeout, check=True):
    """Wait until services_gone(names). After `timeout` seconds: an
    AssertionError (check), else False."""
    what = f"services {names}*" if isinstance(names, str) else f"{len(set(names))} services"
    try:
        wait_for(lambda: services_gone(names), timeout, f"{what} and containers to go")
    except AssertionError:
        if check:
            raise
        return False
    return True


def remove_services(names, timeout=60, check=True):
    """Remove these services; wait until they and their containers are gone
    (see wait_services_gone)."""
    match = _matches(names)
    for name in swarm.service_names():
        if match(name):
            swarm.docker("service", "rm", name, check=False)
    return wait_services_gone(names, timeout, check)


def remove_network(name, tries=30):
    """Remove the network, once a second while something still uses it;
    True when it is gone, False when it still is after `tries`."""
    for _ in range(tries):
        if swarm.docker("network", "rm", name, check=False).returncode == 0:
            return True
        if name not in swarm.docker("network", "ls", "--format", "{{.Name}}").stdout.split():
            return True
        time.sleep(1)
    return False


def remove_volumes(prefix):
    """Try once to remove every volume whose name starts with `prefix`."""
    for volume in swarm.docker("volume", "ls", "-q").stdout.split():
        if volume.startswith(prefix):
            swarm.docker("volume", "rm", volume, check=False)


def remove_by_prefix(prefix, network=None, timeout=60):
    """Remove the services named `prefix`* (waiting up to `timeout` seconds
    for their containers to go), then `network`, then the volumes `prefix`*.
    Does not fail when something stays."""
    remove_services(prefix, timeout, check=False)
    if network:
        remove_network(network)
    remove_volumes(prefix)

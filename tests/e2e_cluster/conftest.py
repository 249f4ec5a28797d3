"""Multi-node end-to-end harness: the project's stack on a real 3-node swarm.

It reuses tests/e2e (deploy(), the docker helpers of swarm.py, HubClient),
pointed at the manager of the test cluster of scripts/cluster.sh:

  node1 10.200.0.11 manager  zone=a
  node2 10.200.0.12 worker   calculation_type=cpu zone=b
  node3 10.200.0.13 worker   calculation_type=gpu zone=b, 2 fake GPUs

Before the first test here (`cluster`, package scope): `scripts/cluster.sh
up`; the project image built from the Dockerfile (as tests/e2e does); the
notebook, project and proxy images loaded into every node (there is no
registry; cluster.sh skips nodes that already have the same image); the
notebook image tagged :gpu and :cpu on every node for the suffix rules.

`cluster_hub`: ONE `docker stack deploy --resolve-image never` of
docker-compose.swarm.yml on node1, with DOCKER_SOCKET=<node1's socket>: the
nodes share the host's filesystem, so the default /var/run/docker.sock would
hand the hub the HOST's engine. Modules pick their settings with
`cluster_hub.configure(settings)`: a `docker stack deploy` of the same stack
with other variables, as an operator would do it (accounts survive), and
every module starts with no user server running. test_09 deploys the
stack's own images from the registry that way (`cluster_hub.resolve_image
= None` for that module); the next module's deploy gets the loaded ones back.

After the last test here: the stack removed and `scripts/cluster.sh down`,
so no cluster is left running (nor kept up while other tests run). The
tests talk to the cluster through an autouse fixture that points
tests/e2e/swarm.py at node1 for each test only, so tests/e2e modules in the
same session keep using the local engine.

Environment:
  JHSWARM_ENV_READY=1        skip env-up.sh (scripts/test.sh ran it)
  JHSWARM_USE_REAL_IMAGES=1  real images, pulled on the host, then loaded
  JHSWARM_CLUSTER_KEEP=1     leave the cluster and the stack running
"""

import os
import threading
import time

import pytest

from e2e import conftest as e2e
from e2e import swarm
from e2e.deploy import file_lock
from e2e.hubclient import HubError
from e2e.swarm import log, wait_for

from .nodes import Cluster, cluster_sh

LOCK_FILE = "/run/jhswarm-e2e-cluster.lock"
KEEP = os.environ.get("JHSWARM_CLUSTER_KEEP") == "1"

PASSWORD = e2e.PASSWORD
ADMIN = e2e.ADMIN
NOTEBOOK_IMAGE = e2e.NOTEBOOK_IMAGE or e2e.PRODUCT_DEFAULT_NOTEBOOK
PROXY_IMAGE = e2e.PROXY_IMAGE or "quay.io/jupyterhub/configurable-http-proxy:4.6.3"
GPU_IMAGE = "jhswarm-standin/notebook:gpu"
CPU_IMAGE = "jhswarm-standin/notebook:cpu"

# Settings every configuration shares: small reservations (each node has
# the machine's 2 CPUs), a short wait for GPUs that do not come, the admin
# account made at start-up, and the suffix rules:
#   -gpu: 1 GPU, on nodes labelled calculation_type=gpu, image :gpu
#   -duo: 2 GPUs, same
#   -cpu: nodes labelled calculation_type=cpu, image :cpu
#   -mgr: node.role==manager (contradicts the global node.role==worker)
#   -dev: NVIDIA_VISIBLE_DEVICES=0,1 (device ids: no reservation)
BASE = {
    "SPAWNER_PULL_POLICY": "ifnotpresent" if e2e.USE_REAL else "never",
    "SPAWNER_CPU_GUARANTEE": "0.1",
    "SPAWNER_MEM_GUARANTEE": "64M",
    "SPAWNER_CPU_LIMIT": "1",
    "SPAWNER_MEM_LIMIT": "1G",
    "SPAWNER_RESOURCE_WAIT": "15",
    "AUTH_ADMIN_PASSWORD": PASSWORD,
    "SPAWNER_CONSTRAINT_IMAGES": (
        f"gpu:calculation_type==gpu->{GPU_IMAGE};"
        f"duo:calculation_type==gpu->{GPU_IMAGE};"
        f"cpu:calculation_type==cpu->{CPU_IMAGE};"
        f"mgr:node.role==manager->{NOTEBOOK_IMAGE};"
        f"dev->{NOTEBOOK_IMAGE}"
    ),
    "SPAWNER_CONSTRAINT_WITH_GPUS": "gpu->1;duo->2;dev->device_id=0,1",
}
GLOBAL_CONSTRAINT = "node.role==worker"
SPREAD = "spread:node.labels.zone"


def placement_settings(cluster):
    """Modules 01-04: user servers on workers only, spread over zones, on
    the nodes' real platform."""
    return {
        "SPAWNER_CONSTRAINTS": GLOBAL_CONSTRAINT,
        "SPAWNER_PREFERENCE": SPREAD,
        "SPAWNER_PLATFORM": "%s:%s" % cluster.platform(),
    }


# -- timing and observations: tests/e2e's lists and summary ---------------------

phase = e2e.phase
observe = e2e.observe


def pytest_terminal_summary(terminalreporter, config):
    # tests/e2e's conftest prints the shared lists when pytest loaded it
    # (a run of all tests); when only this directory runs, print them here
    if not config.pluginmanager.is_registered(e2e):
        e2e.pytest_terminal_summary(terminalreporter)


_CURRENT = {}  # the running Cluster, for the failure hook


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cluster = _CURRENT.get("cluster")
    if report.failed and cluster is not None:
        try:
            with cluster.target():
                report.sections.append(("hub logs (node1, tail)", swarm.hub_logs(200)))
                services = swarm.docker("service", "ls", check=False).stdout
            report.sections.append(("cluster services", services))
        except Exception as e:  # never hide the real failure
            report.sections.append(("hub logs", f"could not read: {e}"))


# -- the cluster -----------------------------------------------------------------


@pytest.fixture(scope="package")
def cluster():
    """A running 3-node swarm with the images loaded; down after the last
    test of this directory."""
    with file_lock(LOCK_FILE, "cluster session"):  # one cluster session at a time
        try:
            yield _bring_up()
        finally:
            _CURRENT.pop("cluster", None)
            if KEEP:
                log("JHSWARM_CLUSTER_KEEP=1: leaving the cluster running (scripts/cluster.sh down)")
            else:
                with phase("cluster: scripts/cluster.sh down"):
                    cluster_sh("down")


def _bring_up():
    if os.environ.get("JHSWARM_ENV_READY") != "1":
        with phase("cluster: env-up.sh"):
            e2e._run(["bash", "scripts/env-up.sh"], "env-up.sh", timeout=3600)
    with phase("cluster: scripts/cluster.sh up"):
        cluster_sh("up")
    c = Cluster.from_script()
    c.read_hostnames()
    with phase("cluster: build project image"):
        build = [swarm.DOCKER, "build", "-t", e2e.PROJECT_IMAGE, "."]
        if e2e.BASE_IMAGE:
            build[2:2] = ["--build-arg", f"BASE_IMAGE={e2e.BASE_IMAGE}"]
        e2e._run(build, "docker build (classic builder)", timeout=1800, env={"DOCKER_BUILDKIT": "0"})
    if e2e.USE_REAL:
        with phase("cluster: pull real images on the host"):
            for image in (NOTEBOOK_IMAGE, PROXY_IMAGE):
                e2e._run([swarm.DOCKER, "pull", image], f"pull {image}", timeout=1800)
    # the notebook image first: the others share its base layers
    with phase("cluster: load images into the nodes"):
        cluster_sh("load", NOTEBOOK_IMAGE, e2e.PROJECT_IMAGE, PROXY_IMAGE, timeout=1800)
    for node in c.nodes:
        for tag in (GPU_IMAGE, CPU_IMAGE):
            c.docker(node, "tag", NOTEBOOK_IMAGE, tag)
    with phase("cluster: clean leftovers"), c.target():
        swarm.cleanup()
        c.remove_user_volumes()
    _CURRENT["cluster"] = c
    return c


@pytest.fixture(autouse=True)
def _on_cluster(cluster):
    """Each test here talks to the cluster's manager (and only these tests)."""
    with cluster.target():
        yield


# -- the hub ---------------------------------------------------------------------


class ClusterHub:
    """The stack deployed on the cluster, reconfigured per module.

    `resolve_image`: the CLI's --resolve-image of every deploy ("never": the
    images loaded into the nodes; None: the CLI asks the registry for the
    digests, for a stack whose images come from a registry, bench/first_spawn.py)."""

    def __init__(self, cluster, resolve_image="never"):
        self.cluster = cluster
        self.resolve_image = resolve_image
        self.deployment = None
        self.settings = None
        self.defaults = None  # deploy()'s own variables (the images, the port, ...)
        self.admin = None
        self.clients = {}
        self.previous = e2e.Deployment.current  # tests/e2e's, restored at the end

    @property
    def env(self):
        return self.deployment.env

    def configure(self, settings):
        """Deploy (first call) or re-deploy the stack with BASE + settings;
        then stop every user server, so a module starts from a clean state.
        A variable of deploy()'s own (JUPYTERHUB_IMAGE, PROXY_IMAGE, ...) in
        `settings` holds for this module only: the next one gets deploy()'s
        value back."""
        settings = {**BASE, **settings, "DOCKER_SOCKET": self.cluster.manager_sock}
        with self.cluster.target():
            if self.deployment is None:
                with phase("cluster: deploy the stack on the manager"):
                    self.deployment = e2e.deploy(resolve_image=self.resolve_image, **settings)
                self.defaults = {k: v for k, v in self.deployment.env.items() if k not in settings}
            elif settings != self.settings:
                self._redeploy(settings)
            self.settings = settings
            if self.admin is None:
                self.admin = self.deployment.client()
                result = self.admin.login(ADMIN, PASSWORD)
                assert result.ok, f"admin login failed: {result}"
            self.stop_all()
        return self

    def _redeploy(self, settings):
        """`docker stack deploy` again with other variables: swarm restarts
        the hub with them (the proxy's settings do not change)."""
        env = {**self.defaults, **settings}
        changed = sorted(k for k in set(env) | set(self.env) if env.get(k) != self.env.get(k))
        with phase(f"cluster: re-deploy with new {', '.join(changed)}"):
            old = swarm.running_task(swarm.HUB_SERVICE)
            swarm.stack_deploy(env, resolve_image=self.resolve_image)
            e2e.check_interpolation(env)

            def new_hub_healthy():
                task = swarm.running_task(swarm.HUB_SERVICE)
                return task and task["ID"] != (old or {}).get("ID") and self.deployment.health()

            wait_for(new_hub_healthy, 180, "the re-deployed hub healthy through the proxy", 1)
        self.deployment.env = env

    def user(self, name):
        """A logged-in browser of `name`: signed up and approved once."""
        if name not in self.clients:
            client = self.deployment.client()
            client.signup(name, PASSWORD)
            self.admin.authorize(name)
            result = client.login(name, PASSWORD)
            assert result.ok, f"login of {name} failed: {result}"
            self.clients[name] = client
        return self.clients[name]

    def stop_all(self, timeout=120):
        """Stop every user server (waiting out spawns in progress); then no
        user service may be left."""
        started = time.monotonic()
        while True:
            r = self.admin.api("GET", "/users")
            assert r.status_code == 200, (r.status_code, r.text[:300])
            busy = [u for u in r.json() if u.get("servers") or u.get("pending")]
            if not busy:
                break
            for u in busy:
                if u.get("pending") in (None, "stop") and u.get("servers"):
                    try:
                        self.admin.stop_server(u["name"], timeout=60)
                    except HubError as e:
                        log(f"stopping {u['name']}: {e}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"servers still running after {timeout}s: {busy}")
            time.sleep(1)
        wait_for(lambda: not swarm.user_services(), 60, "no user service left")


@pytest.fixture(scope="package")
def cluster_hub(cluster):
    hub = ClusterHub(cluster)
    try:
        yield hub
    finally:
        if hub.deployment is not None and e2e.Deployment.current is hub.deployment:
            e2e.Deployment.current = hub.previous
        if not KEEP:
            with phase("cluster: remove the stack"), cluster.target():
                swarm.cleanup()


# -- helpers for the tests ---------------------------------------------------------


def start_all(clients):
    """Start the servers of several users at once; {name: seconds} or the
    error of each. The hub gets every request before any server is ready."""
    from e2e.hubclient import start_and_wait

    results = {}

    def run(name, client):
        try:
            results[name] = start_and_wait(client, name)[1]
        except BaseException as e:  # reported by the caller
            results[name] = e

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    failed = {n: r for n, r in results.items() if isinstance(r, BaseException)}
    assert not failed and len(results) == len(clients), f"spawns failed: {failed or results}"
    return results

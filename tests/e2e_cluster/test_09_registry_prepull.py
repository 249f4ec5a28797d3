"""Notebook images from a registry on the 3-node swarm: pre-pulled on the
nodes that may run them, and a server's node pulls nothing at its spawn.

The tests' registry (scripts/registry-up.sh) also listens on the cluster
bridge's host address, 10.200.0.1:5000, which every node's dockerd takes as
an insecure registry (scripts/cluster.sh). Two images are built on the host
from the notebook stand-in, each with a marker file, pushed through
127.0.0.1:5000, and removed from every node first:

  cluster-nb:cpu  the default image (SPAWNER_CONSTRAINTS=node.role==worker)
  cluster-nb:gpu  the -gpu rule's: calculation_type==gpu and 1 counted GPU

With SPAWNER_PULL_POLICY=ifnotpresent and SPAWNER_PREPULL=true the hub's
jobs must bring the default image to node2 and node3 and the GPU image to
node3 but not node2 (no GPUs there), and both to node1, the manager whose
engine the hub checks an image with before each spawn (no server runs
there), each node's engine logging the pull; then a plain user's and a GPU
user's servers start on workers by the registry's digests, and neither the
engine of the node each runs on nor the manager's logs a pull during the
spawn (the image is there already).

The stack itself comes from the registry too, as an operator deploys it:
the hub image (this repository's build, pushed as HUB_REPO) and the proxy
stand-in (registry-up.sh pushed it) by their registry references, their
names under the registry removed from every node first, and `docker stack
deploy` without `--resolve-image never`: the CLI pins each service to the
registry's digest, and the engine of each node that runs a task of the
stack pulls it (network-anchor, on every node, runs the proxy image).
"""

import os
import time

import pytest

from e2e import swarm
from e2e.conftest import PROJECT_IMAGE, USE_REAL
from e2e.hubclient import start_and_wait
from e2e.swarm import wait_for
from e2e.test_26_registry import registry as registry_sh, registry_digest

from .conftest import (
    GLOBAL_CONSTRAINT, NOTEBOOK_IMAGE, PROXY_IMAGE, observe, phase, placement_settings,
)

pytestmark = pytest.mark.skipif(
    USE_REAL, reason="builds on the stand-in notebook image (JHSWARM_USE_REAL_IMAGES=1 builds none)")

PUSH_ADDR = os.environ.get("JHSWARM_REGISTRY_ADDR", "127.0.0.1:5000")
REPO = "jhswarm-e2e/cluster-nb"
CPU_TAG, GPU_TAG = "cpu", "gpu"
HUB_REPO = "jhswarm-e2e/cluster-hub"
HUB_TAG = "e2e"
HUB_PUSHED = f"{PUSH_ADDR}/{HUB_REPO}:{HUB_TAG}"  # this repository's build, as pushed
MARKER = "/opt/jhswarm-cluster-marker"


def node_addr(cluster):
    """The registry as the nodes reach it (scripts/cluster.sh env)."""
    return cluster.env["CLUSTER_REGISTRY_ADDR"]


def at_nodes(cluster, tag):
    return f"{node_addr(cluster)}/{REPO}:{tag}"


def build_and_push(tag, repo=REPO, then=""):
    """{PUSH_ADDR}/{repo}:{tag} FROM the notebook stand-in with MARKER saying
    `tag`, pushed; `then`: more shell commands in the same RUN (the layer of
    data of bench/first_spawn.py). Returns the pushed reference."""
    ref = f"{PUSH_ADDR}/{repo}:{tag}"
    run = f"echo {tag} > {MARKER}" + (f" && {then}" if then else "")
    swarm.docker("build", "-q", "-t", ref, "-", env={**os.environ, "DOCKER_BUILDKIT": "0"},
                 input_text=f"FROM {NOTEBOOK_IMAGE}\nUSER root\nRUN {run}\nUSER 1000\n",
                 timeout=600)
    swarm.docker("push", ref, timeout=900)
    return ref


def has_image(cluster, node, ref):
    return cluster.docker(node, "image", "inspect", ref, check=False).returncode == 0


def pull_events(cluster, node, since):
    """[(unix time, image)] of the pulls node's engine logged since the unix
    time `since` (also bench/first_spawn.py's pull times)."""
    out = cluster.docker(node, "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                         "--filter", "type=image", "--filter", "event=pull",
                         "--format", "{{.TimeNano}} {{.Actor.ID}}").stdout
    return [(int(t) / 1e9, image) for t, image in
            (line.split(" ", 1) for line in out.splitlines() if " " in line)]


def pulls_since(cluster, node, since):
    """Images node's engine pulled since the unix time `since`."""
    return [image for _, image in pull_events(cluster, node, since)]


def forget_on_node(cluster, node, ref):
    """Remove every name of `ref`'s repository from the node (its tags, and
    the digests a pull by digest leaves without a tag); the layers stay when
    another name (the loaded image) holds them, but the engine must ask the
    registry for the name again."""
    repo = ref.rsplit(":", 1)[0]
    out = cluster.docker(node, "image", "ls", "--digests", repo,
                         "--format", "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}").stdout
    for name in out.split():
        if not name.endswith((":<none>", "@<none>")):
            cluster.docker(node, "image", "rm", name, check=False)
    assert not cluster.docker(node, "image", "ls", "-q", repo).stdout.strip(), (node, repo)


def stack_images(cluster):
    """{service: its reference at the nodes} of the stack deployed from the
    registry: the hub's image (the hub and docker-api), the proxy's (the
    proxy and network-anchor)."""
    hub = f"{node_addr(cluster)}/{HUB_REPO}:{HUB_TAG}"
    proxy = f"{node_addr(cluster)}/{PROXY_IMAGE}"
    return {swarm.HUB_SERVICE: hub, swarm.DOCKER_API_SERVICE: hub,
            swarm.PROXY_SERVICE: proxy, swarm.RELAY_SERVICE: proxy}


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    with phase("cluster registry: registry-up.sh cluster"):
        registry_sh("cluster")
    try:
        with phase("cluster registry: build and push cluster-nb:cpu and :gpu"):
            for tag in (CPU_TAG, GPU_TAG):
                build_and_push(tag)
            for node in cluster.nodes:
                for tag in (CPU_TAG, GPU_TAG):
                    cluster.docker(node, "image", "rm", at_nodes(cluster, tag), check=False)
                    assert not has_image(cluster, node, at_nodes(cluster, tag))
        with phase("cluster registry: push the hub image, forget the stack's images on the nodes"):
            swarm.docker("tag", PROJECT_IMAGE, HUB_PUSHED)
            swarm.docker("push", HUB_PUSHED, timeout=900)
            stack = stack_images(cluster)
            for node in cluster.nodes:
                for ref in set(stack.values()):
                    forget_on_node(cluster, node, ref)
        settings = {
            "JUPYTERHUB_IMAGE": stack[swarm.HUB_SERVICE],
            "PROXY_IMAGE": stack[swarm.PROXY_SERVICE],
            **placement_settings(cluster),
            "SPAWNER_NOTEBOOK_IMAGE": at_nodes(cluster, CPU_TAG),
            "SPAWNER_PULL_POLICY": "ifnotpresent",
            "SPAWNER_PREPULL": "true",
            "SPAWNER_CONSTRAINT_IMAGES": f"gpu:calculation_type==gpu->{at_nodes(cluster, GPU_TAG)}",
            "SPAWNER_CONSTRAINT_WITH_GPUS": "gpu->1",
        }
        cluster_hub.deployed_at = time.time()
        cluster_hub.resolve_image = None  # the CLI asks the registry
        yield cluster_hub.configure(settings)
    finally:
        cluster_hub.resolve_image = "never"  # the next module's deploy: the loaded images
        registry_sh("cluster-stop")
        swarm.docker("image", "rm", HUB_PUSHED, check=False)


def stack_tasks_running(cluster):
    """{service: [hostnames]} once every task swarm wants of the stack runs
    its registry image (one per node for network-anchor), else None."""
    where = {}
    for service, ref in stack_images(cluster).items():
        out = cluster.docker(cluster.manager, "service", "ps", service, "--no-trunc",
                             "--filter", "desired-state=running",
                             "--format", "{{.Node}} {{.Image}} {{.CurrentState}}").stdout
        rows = [line.split(maxsplit=2) for line in out.splitlines() if line.strip()]
        if not rows or any(not (image.startswith(ref + "@") and state.startswith("Running"))
                           for _, image, state in rows):
            return None
        where[service] = sorted(node for node, _, _ in rows)
    if len(where[swarm.RELAY_SERVICE]) != len(cluster.nodes):
        return None
    return where


def test_the_stack_itself_is_pulled_from_the_registry(hub, cluster):
    """Each service of the stack names its registry reference by the
    registry's digest, and every node that runs one of its tasks pulled it
    (network-anchor runs on every node)."""
    seen = {}
    stack = stack_images(cluster)
    for service, ref in stack.items():
        digest = registry_digest(ref, node_addr(cluster))  # the registry's own answer
        image = full_image(cluster.spec_of(service))
        assert image == f"{ref}@{digest}", (service, image)
        seen[service.split("_", 1)[-1]] = image
    with phase("cluster registry: every node runs the stack's tasks from the registry"):
        where = wait_for(lambda: stack_tasks_running(cluster), 180,
                         "the stack's tasks running from the registry's images", interval=2)
    for service, nodes in where.items():
        repo = stack[service].rsplit(":", 1)[0]
        for node in nodes:
            pulls = pulls_since(cluster, node, hub.deployed_at - 5)
            assert any(p.startswith(repo) for p in pulls), (service, node, pulls)
    relay_nodes = where[swarm.RELAY_SERVICE]
    assert sorted(relay_nodes) == sorted(cluster.nodes), relay_nodes
    observe(f"cluster registry: the stack runs {seen}; pulled on "
            f"{ {s.split('_', 1)[-1]: n for s, n in where.items()} }")


def test_each_image_is_pre_pulled_on_the_nodes_that_may_run_it_only(hub, cluster):
    want = {cluster.cpu_node: {CPU_TAG}, cluster.gpu_node: {CPU_TAG, GPU_TAG},
            cluster.manager: {CPU_TAG, GPU_TAG}}
    with phase("cluster registry: pre-pull jobs bring the images to the workers"):
        def pulled():
            return all(has_image(cluster, node, at_nodes(cluster, tag))
                       for node, tags in want.items() for tag in tags)
        try:
            wait_for(pulled, 300, "the pre-pull jobs to bring each image to its nodes", interval=2)
        except AssertionError as e:
            logs = swarm.hub_logs(300)
            raise AssertionError(f"{e}\nhub log (pre-pull):\n" + "\n".join(
                line for line in logs.splitlines() if "re-pull" in line)[-3000:]) from None
        took = time.time() - hub.deployed_at
        wait_for(lambda: not [s for s in swarm.docker(
            "service", "ls", "--format", "{{.Name}}").stdout.split()
            if s.startswith("jupyter-prepull--")], 120, "the finished jobs removed", interval=2)
    # nowhere else: node2 has no GPUs
    assert not has_image(cluster, cluster.cpu_node, at_nodes(cluster, GPU_TAG))
    for node in want:
        pulls = pulls_since(cluster, node, hub.deployed_at - 5)
        assert any(REPO in p for p in pulls), (node, pulls)
    logs = swarm.hub_logs(400)
    said = [line.split("] ", 1)[-1] for line in logs.splitlines() if "Pre-pulled" in line]
    observe(f"cluster registry: pre-pulled within {took:.0f}s of the deploy: :cpu on "
            f"{cluster.manager}, {cluster.cpu_node} and {cluster.gpu_node}, :gpu on "
            f"{cluster.manager} and {cluster.gpu_node}, not {cluster.cpu_node}; "
            f"hub said {said}")
    assert len(said) == 2, said


def full_image(spec):
    return spec["TaskTemplate"]["ContainerSpec"]["Image"]


@pytest.mark.parametrize("name, service, tag", [
    ("pia", "jupyter-pia", CPU_TAG), ("gus-gpu", "jupyter-gus-2dgpu", GPU_TAG)])
def test_a_server_starts_by_digest_and_its_node_pulls_nothing(hub, cluster, name, service, tag):
    client = hub.user(name)
    since = time.time()
    with phase(f"cluster registry: {name} starts"):
        _, took = start_and_wait(client, name, timeout=300)
    spec = cluster.spec_of(service)
    node = cluster.node_of(service)
    digest = registry_digest(at_nodes(cluster, tag), node_addr(cluster))  # the registry's own answer
    assert full_image(spec) == f"{at_nodes(cluster, tag)}@{digest}", full_image(spec)
    assert node in cluster.workers, node
    if tag == GPU_TAG:
        assert node == cluster.gpu_node, node
    pulls = pulls_since(cluster, node, since)
    manager_pulls = pulls_since(cluster, cluster.manager, since)
    container = cluster.running_task(service)["Status"]["ContainerStatus"]["ContainerID"]
    spawn_log = [line[:160] for line in swarm.hub_logs(600).splitlines()
                 if service in line or "pulling" in line or f" {name} " in line][-8:]
    observe(f"cluster registry: {name} ready in {took:.1f}s on {node}, image {full_image(spec)}; "
            f"pulls on {node} during the spawn: {pulls or 'none'}, on {cluster.manager}: "
            f"{manager_pulls or 'none'}; hub log: {spawn_log}")
    assert not [p for p in pulls if REPO in p], pulls
    assert not [p for p in manager_pulls if REPO in p], manager_pulls
    marker = cluster.docker(node, "exec", container, "cat", MARKER).stdout.strip()
    assert marker == tag, marker
    client.stop_server(name)
    wait_for(lambda: service not in swarm.user_services(), 60, f"{service} removed")
    assert GLOBAL_CONSTRAINT in spec["TaskTemplate"]["Placement"]["Constraints"]

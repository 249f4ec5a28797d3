"""The stack on the manager; GPU users on the GPU node with their GPUs.

Settings: SPAWNER_CONSTRAINTS=node.role==worker, suffix rules `gpu`
(calculation_type==gpu, 1 GPU, image :gpu) and `duo` (same, 2 GPUs).
`ann-gpu` and plain `ben` start at the same time: ann-gpu must land on
node3 holding exactly one of its two fake GPUs (DOCKER_RESOURCE_NVIDIA-GPU,
read from /proc/1/environ of the server's container on node3), ben on a
worker with no GPU and none of the rule's settings. Then `cat-duo` gets
both GPUs. Every server is used through the proxy on node1.
"""

import pytest

from e2e import swarm
from e2e.cluster_page import docker_nodes, read_page

from .conftest import GLOBAL_CONSTRAINT, GPU_IMAGE, NOTEBOOK_IMAGE, observe, phase
from .conftest import placement_settings, start_all
from .nodes import (
    GPU_ENV,
    gpu_reservation,
    spec_constraints,
    spec_env,
    spec_generic_resources,
    spec_image,
)

GPU_LABEL = "node.labels.calculation_type==gpu"


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    return cluster_hub.configure(placement_settings(cluster))


def test_stack_runs_on_the_manager_and_uses_its_engine(hub, cluster):
    with phase("cluster: stack services and their nodes"):
        for service in (swarm.HUB_SERVICE, swarm.PROXY_SERVICE, swarm.DOCKER_API_SERVICE):
            assert cluster.node_of(service) == cluster.manager, service
        anchor = f"{swarm.STACK}_network-anchor"
        nodes = sorted(
            cluster.hostnames[t["NodeID"]]
            for t in swarm.service_tasks(anchor)
            if t["Status"]["State"] == "running"
        )
        assert nodes == sorted(cluster.nodes), f"{anchor} runs on {nodes}"

    with phase("cluster: the hub talks to node1's engine, through docker-api"):
        mounts = cluster.spec_of(swarm.DOCKER_API_SERVICE)["TaskTemplate"]["ContainerSpec"]["Mounts"]
        sock = [m for m in mounts if m["Target"] == "/var/run/docker.sock"]
        assert [m["Source"] for m in sock] == [cluster.manager_sock], mounts
        hub_mounts = cluster.spec_of(swarm.HUB_SERVICE)["TaskTemplate"]["ContainerSpec"]["Mounts"]
        assert not [m for m in hub_mounts if "docker.sock" in m["Target"]], hub_mounts
        # what the hub's docker client (dockerspawner's, DOCKER_HOST) is connected to
        container = swarm.hub_container()
        name = swarm.docker(
            "exec", container, "python3", "-c",
            "import docker; i = docker.from_env().info(); "
            "print(i['Name'], i['Swarm']['ControlAvailable'])",
        ).stdout.split()
        observe(f"cluster: the hub's docker client reaches engine {name[0]} (manager: {name[1]})")
        assert name == [cluster.manager, "True"], name


def test_gpu_user_gets_gpu_node_and_gpu_plain_user_none(hub, cluster):
    ann, ben = hub.user("ann-gpu"), hub.user("ben")

    with phase("cluster: ann-gpu and ben start together"):
        took = start_all({"ann-gpu": ann, "ben": ben})
        observe(f"cluster: ann-gpu and ben started concurrently: {took}")

    with phase("cluster: ann-gpu: node3, one GPU"):
        service = "jupyter-ann-2dgpu"
        spec = cluster.spec_of(service)
        assert spec_image(spec) == GPU_IMAGE
        assert spec_constraints(spec) == sorted([GLOBAL_CONSTRAINT, GPU_LABEL])
        assert spec_generic_resources(spec) == gpu_reservation(1)
        assert cluster.node_of(service) == cluster.gpu_node
        gpus = cluster.gpus_of(service)
        observe(f"cluster: ann-gpu runs on {cluster.node_of(service)} with {GPU_ENV}={gpus}")
        assert len(gpus) == 1 and gpus[0] in cluster.gpu_ids, gpus
        assert "NVIDIA_VISIBLE_DEVICES" not in spec_env(spec)

    with phase("cluster: ben: a worker, no GPU"):
        service = "jupyter-ben"
        spec = cluster.spec_of(service)
        node = cluster.node_of(service)
        observe(f"cluster: ben (no rule) runs on {node}")
        assert node in cluster.workers, node
        assert spec_image(spec) == NOTEBOOK_IMAGE
        assert spec_constraints(spec) == [GLOBAL_CONSTRAINT]
        assert spec_generic_resources(spec) == []
        env = cluster.container_env(service)
        assert not [k for k in env if k.startswith("DOCKER_RESOURCE_")], env
        # no GPU: none visible, even where nvidia is the default runtime
        assert env.get("NVIDIA_VISIBLE_DEVICES") == "void", env

    with phase("cluster: the admin's cluster page: three nodes, the GPUs, both servers"):
        r = hub.admin.get("/hub/cluster")
        assert r.status_code == 200, (r.status_code, r.text[:300])
        page, docker = read_page(r.text), docker_nodes()
        observe(f"cluster: the cluster page: {page}")
        assert set(page) == set(docker) == set(cluster.nodes), (page, docker)
        for host, facts in docker.items():
            for key in ("role", "availability", "state", "platform"):
                assert page[host][key] == facts[key], (host, key, page[host], facts)
        (kind, count), = docker[cluster.gpu_node]["gpus"].items()
        assert page[cluster.gpu_node]["generic"] == {kind: f"1 of {count} reserved"}, page
        assert page[cluster.gpu_node]["servers"]["jupyter-ann-2dgpu"] == ("ann-gpu", "running")
        ben_node = cluster.node_of("jupyter-ben")
        assert page[ben_node]["servers"]["jupyter-ben"] == ("ben", "running"), page[ben_node]

    with phase("cluster: both reachable through the proxy on node1"):
        for client in (ann, ben):
            client.open_server()
            assert "started" in client.server_status()

    with phase("cluster: stop ann-gpu; cat-duo gets both GPUs"):
        ann.stop_server("ann-gpu")
        duo = hub.user("cat-duo")
        start_all({"cat-duo": duo})
        service = "jupyter-cat-2dduo"
        assert spec_generic_resources(cluster.spec_of(service)) == gpu_reservation(2)
        assert cluster.node_of(service) == cluster.gpu_node
        gpus = cluster.gpus_of(service)
        observe(f"cluster: cat-duo runs on {cluster.node_of(service)} with {GPU_ENV}={gpus}")
        assert gpus == sorted(cluster.gpu_ids), gpus
        duo.open_server()
        assert "started" in duo.server_status()

    with phase("cluster: stop cat-duo and ben"):
        duo.stop_server("cat-duo")
        ben.stop_server("ben")

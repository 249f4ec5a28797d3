"""SPAWNER_USE_GPUS=all and device ids: NVIDIA_VISIBLE_DEVICES, no
reservation.

Settings (re-deployed): SPAWNER_USE_GPUS=all, no SPAWNER_CONSTRAINTS,
SPAWNER_PREFERENCE=spread:node.labels.zone, rule `dev` with
device_id=0,1. There is no real GPU here (no NVIDIA runtime either): the
tests check what the product asks swarm for and what the container gets,
not that a GPU shows up in it.

- plain users: NVIDIA_VISIBLE_DEVICES=all in the service spec and in the
  server's process, no generic-resource reservation and no
  DOCKER_RESOURCE_NVIDIA-GPU; with nothing reserved swarm places them on any
  node, GPU or not (recorded).
- `lea-dev`: NVIDIA_VISIBLE_DEVICES=0,1, no reservation.

The spread preference is in every spec. Swarm spreads the tasks of ONE
service over the label's values; every user server is a service of its own,
so across users each server goes to one zone picked among those with a
fitting node, not evenly: the zones the three plain users got are recorded,
not asserted.
"""

import pytest

from .conftest import SPREAD, observe, phase, start_all
from .nodes import GPU_ENV, spec_env, spec_generic_resources, spec_preferences

PLAIN = ("kim", "mia", "ned")


@pytest.fixture(scope="module")
def hub(cluster_hub):
    return cluster_hub.configure({"SPAWNER_USE_GPUS": "all", "SPAWNER_PREFERENCE": SPREAD})


def test_all_and_device_ids_are_env_only(hub, cluster):
    clients = {name: hub.user(name) for name in PLAIN + ("lea-dev",)}

    with phase("cluster: three plain users and lea-dev start together"):
        start_all(clients)

    with phase("cluster: specs and environments"):
        placed = {}
        for name in clients:
            service = "jupyter-" + name.replace("-", "-2d")
            spec = cluster.spec_of(service)
            wanted = "0,1" if name == "lea-dev" else "all"
            assert spec_env(spec).get("NVIDIA_VISIBLE_DEVICES") == wanted, spec_env(spec)
            assert spec_generic_resources(spec) == [], spec_generic_resources(spec)
            assert spec_preferences(spec) == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
            env = cluster.container_env(service)
            assert env.get("NVIDIA_VISIBLE_DEVICES") == wanted
            assert GPU_ENV not in env, env[GPU_ENV]
            node = cluster.node_of(service)
            placed[name] = f"{node} (zone {cluster.labels(node)['zone']})"
        observe(f"cluster: SPAWNER_USE_GPUS=all / device_id=0,1, nothing reserved, "
                f"spread:node.labels.zone: placed {placed}")

    with phase("cluster: reachable; stop"):
        for name, client in clients.items():
            client.open_server()
            assert "started" in client.server_status()
            client.stop_server(name)

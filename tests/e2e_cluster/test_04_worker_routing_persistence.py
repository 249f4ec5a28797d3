"""A server on a worker is reached through the proxy on node1, and a local
volume keeps files only on the node it lives on.

- `gil-cpu` (rule calculation_type==cpu: pinned to node2): the proxy on
  node1 routes /user/gil-cpu/ over the overlay to the task's own address on
  node2. A file in persistence/ survives a stop and a start, because swarm
  places the new server on node2 again, where the volume is.
- `hal` (no rule; any worker): same, but before the second start the node
  it ran on is paused, so swarm places it on the other worker. There it finds
  a new, empty volume of the same name: the file is not there (it is still in
  the volume on the first node). This is the local-volume caveat docs/storage.md
  describes; pin users with constraints or use NFS/CIFS.
"""

import time

import pytest

from e2e import swarm

from .conftest import NOTEBOOK_IMAGE, observe, phase, placement_settings, start_all

FILE = "persistence/kept.txt"


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    return cluster_hub.configure(placement_settings(cluster))


def task_address(cluster, service):
    task = cluster.running_task(service)
    for attachment in task["NetworksAttachments"]:
        if attachment["Network"]["Spec"]["Name"] == swarm.NETWORK:
            return attachment["Addresses"][0].split("/")[0]
    raise AssertionError(f"{service} has no address on {swarm.NETWORK}: {task['NetworksAttachments']}")


def test_pinned_user_reached_through_proxy_keeps_files(hub, cluster):
    gil, name, service = hub.user("gil-cpu"), "gil-cpu", "jupyter-gil-2dcpu"

    with phase("cluster: gil-cpu starts on node2; the proxy on node1 routes to it"):
        start_all({name: gil})
        node = cluster.node_of(service)
        address = task_address(cluster, service)
        route = swarm.proxy_routes()[f"/user/{name}"]["target"]
        observe(f"cluster: gil-cpu runs on {node} at {address}; proxy (node1) route: {route}")
        assert node == cluster.cpu_node
        assert cluster.node_of(swarm.PROXY_SERVICE) == cluster.manager
        assert route == f"http://{address}:8888", route
        gil.open_server()
        kept = f"kept {time.time()}\n"
        gil.put_file(FILE, kept)
        assert gil.get_file(FILE) == kept
        first_task = cluster.running_task(service)["ID"]

    with phase("cluster: from gil-cpu's server on node2: the hub's API, not the proxy's"):
        seen = cluster.reach_from(service, swarm.WALL_PROBES)
        observe(f"cluster: from a server on {node}: {seen}")
        swarm.assert_walled_off(seen)

    with phase("cluster: gil-cpu stops and starts: node2 again, file kept"):
        gil.stop_server(name)
        start_all({name: gil})
        again = cluster.running_task(service)
        assert again["ID"] != first_task
        assert cluster.node_of(service) == cluster.cpu_node
        gil.open_server()
        assert gil.get_file(FILE) == kept
        gil.stop_server(name)


def test_unpinned_user_moved_to_another_node_finds_an_empty_volume(hub, cluster):
    hal, name, service, volume = hub.user("hal"), "hal", "jupyter-hal", "jupyterhub-user-hal"

    with phase("cluster: hal starts on some worker, writes a file"):
        start_all({name: hal})
        first = cluster.node_of(service)
        assert first in cluster.workers, first
        hal.open_server()
        kept = f"kept {time.time()}\n"
        hal.put_file(FILE, kept)
        hal.stop_server(name)

    other = next(n for n in cluster.workers if n != first)
    node_id = {h: i for i, h in cluster.hostnames.items()}[first]
    swarm.docker("node", "update", "--availability", "pause", node_id)
    try:
        with phase(f"cluster: {first} paused; hal starts again"):
            start_all({name: hal})
            second = cluster.node_of(service)
            hal.open_server()
            found = hal.get_file(FILE)
            observe(f"cluster: hal wrote {FILE} on {first}; restarted on {second} "
                    f"(first node paused): the file is {'there' if found else 'missing'}")
            assert second == other, second
            assert found is None, found
    finally:
        swarm.docker("node", "update", "--availability", "active", node_id)

    with phase("cluster: the file is still in hal's volume on the first node"):
        on_first = cluster.volume_file(first, volume, "kept.txt", NOTEBOOK_IMAGE)
        observe(f"cluster: {volume} exists on {[n for n in cluster.nodes if volume in cluster.volumes(n)]}; "
                f"on {first} it holds kept.txt: {on_first is not None}")
        assert volume in cluster.volumes(first) and volume in cluster.volumes(second)
        assert on_first == kept
        hal.stop_server(name)

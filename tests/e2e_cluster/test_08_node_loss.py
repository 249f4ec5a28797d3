"""The node of a user's server goes down (its dockerd and everything it ran
killed at once, so the node reports nothing) and comes back.

Swarm marks the node Down within seconds but keeps calling the server's task
"running", for ever, with desired state "shutdown"; restart condition none
makes no other task. The hub must not keep routing to it: at its next poll
(SPAWNER_POLL_INTERVAL) it knows the server is gone, removes the service,
and the user sees "Start My Server". Once the node is back, the user's
next start lands there again (the suffix rule pins `-cpu` users to node2)
and finds the files of the local volume."""

import time

from e2e import swarm

from .conftest import observe, phase, placement_settings, start_all
from .nodes import cluster_sh

NAME, SERVICE = "ida-cpu", "jupyter-ida-2dcpu"
FILE = "persistence/before-the-outage.txt"


def test_the_hub_lets_go_of_a_server_whose_node_went_down(cluster_hub, cluster):
    hub = cluster_hub.configure(placement_settings(cluster))
    ida = hub.user(NAME)
    node = cluster.cpu_node

    with phase("node loss: ida-cpu runs on node2 and saves a file"):
        start_all({NAME: ida})
        assert cluster.node_of(SERVICE) == node
        ida.open_server()
        ida.put_file(FILE, "saved before node2 went down")

    try:
        with phase("node loss: node2 goes down; the hub lets the server go"):
            t0 = time.monotonic()
            cluster_sh("stop", node)
            swarm.wait_for(lambda: cluster.node_state(node) == "down", 120, f"{node} Down")
            down_after = time.monotonic() - t0
            task = swarm.service_tasks(SERVICE)[0]
            observe(f"node loss: {node} Down after {down_after:.1f}s; swarm says the task is "
                    f"{task['Status']['State']!r}, desired {task['DesiredState']!r}")
            swarm.wait_for(lambda: not ida.user_model(NAME)["servers"], 180,
                           "the hub to know ida-cpu's server is gone")
            known_after = time.monotonic() - t0
            swarm.wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")
            observe(f"node loss: the hub knew {known_after:.1f}s after the node went down "
                    f"({known_after - down_after:.1f}s after swarm marked it Down); service removed")
            assert f"/user/{NAME}" not in swarm.proxy_routes()
    finally:
        with phase("node loss: node2 comes back"):
            cluster_sh("up")

    with phase("node loss: ida-cpu starts again on node2, the file is there"):
        start_all({NAME: ida})
        assert cluster.node_of(SERVICE) == node
        ida.open_server()
        assert ida.get_file(FILE) == "saved before node2 went down"
        observe(f"node loss: {NAME} back on {node}; containers of {SERVICE} by node: "
                f"{cluster.containers_of(SERVICE)}")
        ida.stop_server(NAME)

"""Stop, then start again at once: the hub must route to the NEW server.

Right after a stop the old container may still be shutting down and the
service name may resolve to it for a few seconds; the spawner routes by the
running task's own address. The new server is recognised by its `started`
time in /api/status and by a scratch file (outside persistence/) that only
the old container had.
"""

from . import swarm
from .conftest import observe, phase
from .hubclient import start_and_wait

NAME = "steve"
SERVICE = "jupyter-steve"


def test_stop_then_start_reaches_new_server(hub, make_user):
    with phase("stop/start: first server"):
        steve = make_user(NAME)
        start_and_wait(steve)
        steve.open_server()
        old = steve.server_status()
        steve.put_file("old-server.txt", "only in the old container\n")
        old_task = swarm.running_task(SERVICE)
        old_container = old_task["Status"]["ContainerStatus"]["ContainerID"]
        old_ip = old_task["NetworksAttachments"][0]["Addresses"][0]

    with phase("stop/start: stop, start immediately"):
        steve.stop_server(NAME)
        model, _ = start_and_wait(steve)
        new_task = swarm.running_task(SERVICE)
        new_ip = new_task["NetworksAttachments"][0]["Addresses"][0]
        still_there = [c for c, _ in swarm.containers(all_states=False) if c == old_container]
        observe(
            f"{NAME}: stop+start: old task {old_ip}, new task {new_ip}; "
            f"old container still running when the new server was ready: {bool(still_there)}"
        )
        assert new_task["Status"]["ContainerStatus"]["ContainerID"] != old_container

    with phase("stop/start: the proxy reaches the new server"):
        steve.open_server()
        new = steve.server_status()
        assert new["started"] > old["started"], (old, new)
        assert steve.get_file("old-server.txt") is None
        steve.put_file("new-server.txt", "new\n")
        assert steve.get_file("new-server.txt") == "new\n"
        assert model["servers"][""]["url"] == f"/user/{NAME}/", model
        target = swarm.proxy_routes()[f"/user/{NAME}"]["target"]
        assert target == f"http://{new_ip.split('/')[0]}:8888", (target, new_ip)

    with phase("stop/start: stop"):
        steve.stop_server(NAME)

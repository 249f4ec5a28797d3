"""A full user network (docker-compose.network.yml with a tiny subnet) on
the real swarm: the subnet is what SPAWNER_NETWORK_SUBNET says, the servers
that fit start, the next spawn fails within seconds with "the network is
full" and the numbers, leaves no service behind, and starts once a server
stopped.

A /29 holds 2^3 - 3 = 5 addresses; the node takes two (its load balancer's
and the stack's network-anchor task's), the hub and the proxy one each: room
for 1 server (docker-compose.network.yml, docs). Swarm itself
shows such a task only as "new" ("created"), its reason is in the manager's
log alone ("could not find an available IP")."""

import time

from . import swarm
from .conftest import SETTINGS, observe, phase
from .deploy import deploy
from .hubclient import start_and_wait
from .swarm import wait_for

SUBNET = "10.250.99.0/29"
PASSWORD = "a long password 1"
FIT, EXTRA = ["nora"], "nils"


def test_a_full_user_network_fails_the_spawn_with_the_numbers():
    d = deploy(**SETTINGS, SPAWNER_NETWORK_SUBNET=SUBNET, extra_files=["docker-compose.network.yml"])
    admin = d.admin_client()
    users = {}
    for name in FIT + [EXTRA]:
        users[name] = d.client(name)
        users[name].signup(name, PASSWORD)
        admin.authorize(name)
        assert users[name].login(name, PASSWORD).ok

    with phase("network full: the user network has the subnet asked for"):
        network = swarm.docker("network", "inspect", "--format", "{{json .IPAM.Config}}",
                               SETTINGS.get("SPAWNER_NETWORK_NAME", "jupyterhub_network")).stdout
        observe(f"network full: IPAM config {network.strip()}")
        assert SUBNET in network, network

    with phase("network full: the servers that fit start"):
        for name in FIT:
            start_and_wait(users[name])

    with phase("network full: one more fails with the numbers"):
        t0 = time.monotonic()
        r = users[EXTRA].start_server(EXTRA)
        assert r.status_code in (201, 202, 500), (r.status_code, r.text[:300])
        events = users[EXTRA].progress_events(EXTRA, timeout=120)
        took = time.monotonic() - t0
        message = events[-1]["message"] if events else ""
        observe(f"network full: {EXTRA}'s spawn failed after {took:.1f}s: {message!r}")
        assert events and events[-1].get("failed"), events
        assert "the network is full" in message and SUBNET in message, message
        assert "SPAWNER_NETWORK_SUBNET" in message, message
        wait_for(lambda: f"jupyter-{EXTRA}" not in swarm.user_services(), 30,
                 f"jupyter-{EXTRA} removed")

    with phase("network full: after one server stops, the same user starts"):
        users[FIT[0]].stop_server(FIT[0])
        _, took = start_and_wait(users[EXTRA])
        observe(f"network full: {EXTRA} started {took:.1f}s after {FIT[0]} stopped")
        for name in FIT[1:] + [EXTRA]:
            users[name].stop_server(name)
    swarm.cleanup()

"""A proxy that restarts gets its routes back from the hub in seconds.

`docker kill` of the proxy's container: swarm starts a new proxy task,
which knows no route. JupyterHub alone puts them back only every
last_activity_interval (5 minutes) for a proxy it did not start; the hub
here looks at the routing table every few seconds (SwarmProxy). The test
waits up to 60 s for the hub's login page and the user's running server to
answer through the new proxy, and prints how long it took."""

import time

from . import swarm
from .conftest import observe, phase
from .hubclient import HubError, start_and_wait
from .swarm import log, wait_for

NAME = "petra"


def proxy_container():
    task = swarm.running_task(swarm.PROXY_SERVICE)
    return task and task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")


def test_routes_come_back_after_the_proxy_restarts(hub, make_user):
    with phase("proxy restart: a running server"):
        petra = make_user(NAME)
        start_and_wait(petra)
        petra.open_server()
        started = petra.server_status()["started"]
        old = proxy_container()
        assert old

    with phase("proxy restart: docker kill"):
        swarm.docker("kill", old)
        new = wait_for(lambda: (c := proxy_container()) and c != old and c, 120,
                       "swarm to run a new proxy task")
        t0 = time.monotonic()
        log(f"proxy container {old[:12]} -> {new[:12]}")

    with phase("proxy restart: hub and server answer through the new proxy"):
        def both_answer():
            try:
                login = hub.client().get("/hub/login")
                status = petra.server_status()
            except (HubError, OSError) as e:
                log(f"  not yet: {e}")
                return None
            return login.status_code == 200 and status["started"] == started
        wait_for(both_answer, 60, "the hub's and petra's routes on the new proxy", interval=0.5)
        took = time.monotonic() - t0
        observe(f"routes back on a restarted proxy {took:.1f}s after its task ran "
                "(JupyterHub alone: up to 300 s)")
        routes = swarm.proxy_routes()
        assert "/" in routes and f"/user/{NAME}" in routes, sorted(routes)
        # put back by the hub's route check (JupyterHub's check_routes logs it)
        logs = swarm.hub_logs(400)
        assert f"Adding missing route for /user/{NAME}" in logs, logs[-3000:]

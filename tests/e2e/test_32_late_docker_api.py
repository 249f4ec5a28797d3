"""A hub that starts before the stack's docker-api answers still removes
what an earlier run of it left behind.

At a first deploy (or a restart of the whole stack) the hub can be up before
its docker-api service: the hub's look for leftover services then fails.
It must try again until docker answers, not give up for the rest of its
run. Here: a service labelled as this hub's that its database does not
know (as test_12's ghost), docker-api scaled to 0, the hub restarted; once
the hub has logged that it could not look, docker-api comes back, and the
ghost must go.
"""

import time

from . import swarm
from .conftest import observe
from .swarm import wait_for
from .test_12_hub_killed_mid_spawn import create_foreign

GHOST = "jupyter-lateghost"


def scale_docker_api(replicas):
    swarm.docker("service", "scale", "--detach", f"{swarm.DOCKER_API_SERVICE}={replicas}")


def test_leftovers_removed_once_docker_api_answers(hub):
    create_foreign(GHOST, swarm.HUB_SERVICE)
    try:
        scale_docker_api(0)
        wait_for(lambda: swarm.running_task(swarm.DOCKER_API_SERVICE) is None, 60,
                 "docker-api scaled to 0", interval=0.5)
        old_hub = swarm.hub_container()
        swarm.docker("service", "update", "--force", "--detach", "--no-resolve-image",
                     swarm.HUB_SERVICE)
        wait_for(lambda: (c := swarm.hub_container()) and c != old_hub, 120, "a new hub")
        hub.wait_healthy(180)
        try:
            wait_for(lambda: "Could not look for leftover services" in swarm.hub_logs(400), 180,
                     "the new hub to find docker-api not answering", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; hub log:\n{swarm.hub_logs(80)[-4000:]}") from None
        assert swarm.service_inspect(GHOST), f"{GHOST} went while docker-api was down"
        scale_docker_api(1)
        t0 = time.monotonic()
        wait_for(lambda: swarm.running_task(swarm.DOCKER_API_SERVICE), 60, "docker-api back",
                 interval=0.5)
        back = time.monotonic() - t0

        def ghost_gone():
            return swarm.service_inspect(GHOST) is None

        try:
            wait_for(ghost_gone, 150, f"the hub to remove {GHOST} once docker-api answers",
                     interval=1)
        except Exception:
            raise AssertionError(f"{GHOST} still there 150 s after docker-api came back; "
                                 f"hub log:\n{swarm.hub_logs(60)[-3000:]}") from None
        gone = time.monotonic() - t0
        logs = swarm.hub_logs(400)
        assert "Removed what an earlier run of this hub left behind" in logs and GHOST in logs, \
            logs[-3000:]
        observe(f"late docker-api: running again {back:.1f}s after the scale-up; {GHOST} removed "
            f"{gone:.1f}s after it")
    finally:
        scale_docker_api(1)
        swarm.docker("service", "rm", GHOST, check=False)
        wait_for(lambda: swarm.running_task(swarm.DOCKER_API_SERVICE), 60, "docker-api back",
                 interval=0.5)

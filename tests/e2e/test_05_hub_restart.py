"""User servers outlive a hub restart (cleanup_servers = False): after
`docker service update --force <stack>_jupyterhub` the hub is healthy again,
still knows the running server, the same service keeps running and answers
through the proxy with the user's existing cookies; nothing is duplicated.

A fresh login reaching the server needs the server to reach the hub at its
new address. jupyterhub-singleuser 5.x (`rita-su55`) does at once. 6.x
(`rita`, the default stand-in) resolves the hub's name through aiohttp's
aiodns, whose c-ares cache keeps docker's answer for its TTL of 600 s: until
then it dials the old address (docs/administration.md, "When things fail"). What 6.x does is
recorded, the 5.x server must pass.
"""

import pytest

from . import swarm
from .conftest import PASSWORD, observe, phase
from .hubclient import HubError, start_and_wait
from .swarm import log, wait_for


@pytest.mark.parametrize("NAME", ["rita-su55", "rita"])
def test_hub_restart_keeps_user_server(hub, make_user, NAME):
    SERVICE = "jupyter-" + NAME.replace("-", "-2d")
    with phase("hub restart: user server running"):
        rita = make_user(NAME)
        start_and_wait(rita)
        rita.open_server()
        before_status = rita.server_status()
        service_id = swarm.service_inspect(SERVICE)["ID"]
        task_id = swarm.running_task(SERVICE)["ID"]
        old_hub = swarm.hub_container()
        assert old_hub

    with phase("hub restart: docker service update --force"):
        swarm.docker("service", "update", "--force", "--detach", swarm.HUB_SERVICE, timeout=60)

        def new_hub_running():
            current = swarm.hub_container()
            return current if current and current != old_hub else None

        new_hub = wait_for(new_hub_running, 120, "a new hub task running")
        log(f"hub container {old_hub[:12]} -> {new_hub[:12]}")

    with phase("hub restart: healthy again through the proxy"):
        hub.wait_healthy(180)
        # the old hub may have answered the first checks: wait for the new
        # one to have loaded the user's server
        def hub_knows_server():
            model = rita.user_model(NAME)
            return model if model["servers"].get("", {}).get("ready") else None

        model = wait_for(hub_knows_server, 60, "the new hub to report rita's server ready")
        assert model["servers"][""]["ready"], model

    with phase("hub restart: same server, reachable, not duplicated"):
        assert swarm.service_inspect(SERVICE)["ID"] == service_id
        assert swarm.running_task(SERVICE)["ID"] == task_id
        assert [s for s in swarm.user_services() if s.startswith(SERVICE)] == [SERVICE]
        after_status = rita.server_status()  # existing cookies still work
        assert after_status["started"] == before_status["started"], (before_status, after_status)
        # and a fresh login reaches it too
        again = hub.client()
        assert again.login(NAME, PASSWORD).ok
        if NAME == "rita":  # jupyterhub-singleuser 6.x: see above
            try:
                again.open_server(NAME)
                observe("hub restart: a fresh login reached the singleuser 6.x server at once")
            except (HubError, OSError) as e:
                observe(f"hub restart: a fresh login to the singleuser 6.x server failed "
                        f"(its cached DNS answer for the hub): {str(e)[:120]}")
        else:
            again.open_server(NAME)
            assert again.server_status(NAME)["started"] == before_status["started"]
        logs = swarm.hub_logs(400)
        assert "Traceback" not in logs, logs[-3000:]

    with phase("hub restart: stop"):
        rita.stop_server(NAME)
        wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")

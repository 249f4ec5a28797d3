"""User servers outlive a hub restart (cleanup_servers = False): after
`docker service update --force <stack>_jupyterhub` the hub is healthy again,
still knows the running server, the same service keeps running and answers
through the proxy with the user's existing cookies; nothing is duplicated.

A fresh login reaching the server needs the server to ask the hub, which
now has a new address. jupyterhub-singleuser 5.x (`rita-su55`) looks the
hub's name up again; 6.x (`rita`, the default stand-in) keeps docker's
answer for its TTL of 600 s (aiohttp's aiodns). Servers therefore dial the
stack's hub-relay (HUB_API_RELAY), which keeps its address and follows the
hub at once: both must reach their server within a minute of the restart
(before the relay, the 6.x server answered HTTP 500 for ten minutes).
"""

import time

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
        # and a fresh login reaches it too: the server asks the hub about
        # the new login's token (through hub-relay)
        again = hub.client()
        assert again.login(NAME, PASSWORD).ok
        restarted = time.monotonic()
        failures = []

        def fresh_login_reaches_server():
            try:
                return again.open_server(NAME)
            except (HubError, OSError) as e:
                failures.append(str(e)[:120])
                return None

        wait_for(fresh_login_reaches_server, 60,
                 f"a fresh login to reach {NAME}'s server (singleuser asking the hub anew)", 2)
        observe(f"hub restart: a fresh login reached {NAME}'s server "
                f"{time.monotonic() - restarted:.1f}s after the new hub was ready, "
                f"{len(failures)} failed tries before ({failures[:1]})")
        assert again.server_status(NAME)["started"] == before_status["started"]
        api_url = swarm.spec_env(swarm.spec_of(SERVICE))["JUPYTERHUB_API_URL"]
        assert api_url == "http://hub-relay:8001/hub/api", api_url
        logs = swarm.hub_logs(400)
        assert "Traceback" not in logs, logs[-3000:]

    with phase("hub restart: stop"):
        rita.stop_server(NAME)
        wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")

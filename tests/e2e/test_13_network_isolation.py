"""A user's server reaches the hub's API and the public proxy port, nothing
else of the stack: the proxy's API and the hub's database are on the
stack's internal overlay (jupyterhub_internal), which user servers never
join, and the proxy's API listens only on its address there.

Probed from inside the running server's container (docker exec), as code in
a notebook would: names, TCP connections, HTTP. (Not probed: the internal
network's addresses themselves. The overlays are separate networks and a
node has no route into them, but on the test machines every TCP connection
to an address outside the node is accepted by the egress proxy, so such a
probe "connects" whatever the stack does.) The stack database of
docker-compose.postgres.yml is probed the same way in
test_00_databases.py::test_compose_postgres.
"""

from . import swarm
from .conftest import observe, phase
from .hubclient import start_and_wait

NAME = "walled"
SERVICE = "jupyter-walled"


def test_a_user_server_reaches_the_hub_api_and_the_proxy_only(hub, make_user):
    user = make_user(NAME)
    start_and_wait(user)
    with phase("network: what the user's server can reach"):
        seen = swarm.reach_from(SERVICE, swarm.WALL_PROBES)
        observe(f"network: from a user server: {seen}")
        swarm.assert_walled_off(seen)
    with phase("network: JupyterLab works through the proxy"):
        user.open_server()
        assert "started" in user.server_status()
        user.stop_server(NAME)

"""Named servers (HUB_ALLOW_NAMED_SERVERS) on the real swarm: a user's
default and named server run at once as two services, see the same files
(the user's volume), the per-user limit refuses one more with nothing
created, and stopping one leaves the other running."""

from . import swarm
from .conftest import SETTINGS, observe, phase
from .deploy import deploy
from .hubclient import start_and_wait
from .swarm import wait_for

NAME = "nina"
PASSWORD = "a long password 1"
DEFAULT, SECOND = "jupyter-nina", "jupyter-nina-s-second"


def server_model(client, server):
    return client.api("GET", f"/users/{NAME}").json()["servers"].get(server)


def test_two_servers_of_one_user_at_once_share_files():
    d = deploy(**SETTINGS, HUB_ALLOW_NAMED_SERVERS="true", HUB_NAMED_SERVER_LIMIT_PER_USER="1")
    admin = d.admin_client()
    user = d.client(NAME)
    user.signup(NAME, PASSWORD)
    admin.authorize(NAME)
    assert user.login(NAME, PASSWORD).ok

    with phase("named servers: the default one and 'second' run at once"):
        start_and_wait(user)
        r = user.api("POST", f"/users/{NAME}/servers/second")
        assert r.status_code in (201, 202), (r.status_code, r.text[:300])
        wait_for(lambda: (server_model(user, "second") or {}).get("ready"), 180,
                 "the named server 'second' ready")
        services = sorted(swarm.user_services())
        observe(f"named servers: services {services}")
        assert services == [DEFAULT, SECOND], services
        default_task = swarm.running_task(DEFAULT)["ID"]
        assert swarm.running_task(SECOND)

    with phase("named servers: a file saved in one is there in the other"):
        user.open_server(NAME)
        user.put_file("persistence/shared.txt", "saved by the default server")
        user.open_server(f"{NAME}/second")
        assert user.get_file("persistence/shared.txt", f"{NAME}/second") == "saved by the default server"
        mounts = [swarm.service_inspect(s)["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Source"]
                  for s in (DEFAULT, SECOND)]
        assert mounts[0] == mounts[1], mounts

    with phase("named servers: over the limit of 1: refused, nothing created"):
        r = user.api("POST", f"/users/{NAME}/servers/third")
        observe(f"named servers: a third: HTTP {r.status_code} {r.text[:160]}")
        assert r.status_code == 400 and "maximum" in r.text, (r.status_code, r.text[:300])
        assert sorted(swarm.user_services()) == [DEFAULT, SECOND]

    with phase("named servers: stopping 'second' leaves the default one running"):
        r = user.api("DELETE", f"/users/{NAME}/servers/second")
        assert r.status_code in (202, 204), (r.status_code, r.text[:300])
        wait_for(lambda: SECOND not in swarm.user_services(), 90, f"{SECOND} removed")
        assert swarm.running_task(DEFAULT)["ID"] == default_task
        assert user.get_file("persistence/shared.txt", NAME) == "saved by the default server"
        user.stop_server(NAME)
    swarm.cleanup()

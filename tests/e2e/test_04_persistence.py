"""The per-user volume keeps `persistence/` across a stop and a start.

Everything outside `persistence/` lives in the service's container, which a
stop removes: a file written there is gone after the restart (expected, and
what docs/storage.md says).
"""

import time

from . import swarm
from .conftest import phase
from .hubclient import start_and_wait
from .swarm import wait_for

NAME = "pat"
SERVICE = "jupyter-pat"


def test_persistence_survives_stop_and_start(hub, make_user):
    with phase("persistence: user + first start"):
        pat = make_user(NAME)
        start_and_wait(pat)
        pat.open_server()

    kept = f"kept {time.time()}\n"
    with phase("persistence: write persistence/kept.txt and scratch.txt"):
        pat.put_file("persistence/kept.txt", kept)
        pat.put_file("scratch.txt", "lost on stop\n")
        assert pat.get_file("persistence/kept.txt") == kept
        first_service = swarm.service_inspect(SERVICE)["ID"]

    with phase("persistence: stop (service disappears)"):
        pat.stop_server(NAME)
        wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} gone from service ls")
        volumes = swarm.docker("volume", "ls", "-q").stdout.split()
        assert "jupyterhub-user-pat" in volumes, volumes

    with phase("persistence: start again"):
        start_and_wait(pat)
        assert swarm.service_inspect(SERVICE)["ID"] != first_service
        pat.open_server()

    with phase("persistence: file in persistence/ kept, scratch.txt gone"):
        assert pat.get_file("persistence/kept.txt") == kept
        assert pat.get_file("scratch.txt") is None
        # the volume is writable by the notebook user after the restart too
        pat.put_file("persistence/second.txt", "again\n")

    with phase("persistence: stop"):
        pat.stop_server(NAME)

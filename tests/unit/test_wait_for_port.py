"""SwarmUserSpawner._wait_for_port: start() returns once the user's server
accepts connections, so the hub's own HTTP check (exponential backoff)
succeeds at its first try; a server that exits meanwhile fails with
swarm's reason. Real sockets on 127.0.0.1; the docker client is a stand-in."""

import asyncio
import socket

import pytest
from conftest import load_config
from spawner_harness import make_spawner


class Tasks:
    """Stands in for the docker client: `tasks` answers `states`."""

    def __init__(self, *states, err=""):
        self.states = states
        self.err = err
        self.calls = []

    async def __call__(self, method, *args, **kwargs):
        self.calls.append(method)
        if method == "tasks":
            return [{"CreatedAt": str(i), "Status": {"State": s, "Err": self.err}}
                    for i, s in enumerate(self.states)]
        if method == "remove_service":
            return None
        raise AssertionError(f"unexpected docker call {method}")


def spawner_with(docker, http_timeout=30):
    spawner = make_spawner(load_config(), "alice")
    spawner.docker = docker
    spawner.http_timeout = http_timeout
    return spawner


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_returns_once_the_port_accepts():
    async def run():
        accepted = []
        server = await asyncio.start_server(
            lambda r, w: (accepted.append(1), w.close()), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        docker = Tasks("running")
        async with server:
            await spawner_with(docker)._wait_for_port("127.0.0.1", port)
            await asyncio.sleep(0.05)
        return accepted, docker.calls

    accepted, calls = asyncio.run(run())
    assert accepted == [1]
    assert calls == []  # answered at once: no need to look at the task


def test_a_server_that_exits_fails_with_swarms_reason():
    docker = Tasks("failed", "ready", err="task: non-zero exit (1)")
    spawner = spawner_with(docker)
    with pytest.raises(Exception) as info:
        asyncio.run(spawner._wait_for_port("127.0.0.1", closed_port()))
    message = getattr(info.value, "jupyterhub_message", "")
    assert "the server stopped while starting: task: non-zero exit (1)" in message
    assert "remove_service" in docker.calls


def test_after_http_timeout_the_hubs_own_check_decides():
    docker = Tasks("running")
    spawner = spawner_with(docker, http_timeout=2)  # an integer trait
    asyncio.run(spawner._wait_for_port("127.0.0.1", closed_port()))  # returns, no error
    assert "remove_service" not in docker.calls

"""One user's slow image pull must not hold up another user's docker calls.

dockerspawner makes every docker call of every spawner in one thread; a pull
from a slow registry then delayed every other user's spawn, stop and poll
for as long as it took. Real engine, real pull: the registry is a port on
this machine that accepts the engine's connection and never answers, so the
engine's pull hangs until the test lets it go. Meanwhile another user's
spawner asks the engine for its version and its services: it must get both
while the pull is still hanging (an order, no time limit)."""

import asyncio
import socket
import threading
import time

import docker

from conftest import load_config
from unit.spawner_harness import make_spawner

from .deploy import hold_engine_lock


class SilentRegistry:
    """A TCP port that accepts connections and says nothing until released."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.released = None
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def release(self):
        self.released = time.monotonic()
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_another_users_calls_do_not_wait_behind_a_pull(monkeypatch):
    hold_engine_lock()
    config = load_config()
    puller, other = make_spawner(config, "ann"), make_spawner(config, "bob")
    monkeypatch.setattr(type(puller), "_client", docker.APIClient(version="auto"))
    registry = SilentRegistry()
    # the test's own fallback: the pull ends after 60 s whatever happens
    fallback = threading.Timer(60, registry.release)
    fallback.start()

    async def run():
        pull = asyncio.ensure_future(
            puller.docker("pull", f"127.0.0.1:{registry.port}/slow/image", tag="1"))
        while not registry.connected.is_set():  # the engine is dialling the registry
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        version = await other.docker("version")
        tasks = await other.docker("services", filters={"name": "jupyter-bob"})
        answered = time.monotonic()
        still_pulling = not pull.done()
        registry.release()
        try:
            await pull
        except Exception as e:  # the released registry: the pull fails
            pull_error = f"{type(e).__name__}: {str(e)[:120]}"
        else:
            pull_error = "none"
        return version, tasks, answered - t0, still_pulling, pull_error

    try:
        version, tasks, took, still_pulling, pull_error = asyncio.run(run())
    finally:
        fallback.cancel()
        registry.release()
    print(f"another user's two calls took {took:.2f}s while the pull hung "
          f"(pull still hanging: {still_pulling}; the pull then ended with {pull_error})")
    assert version.get("ApiVersion") and tasks == []
    assert still_pulling, f"the other user's calls came back only after the pull ended ({took:.1f}s)"

"""A docker call waits for an engine API that cannot be connected to yet
(the stack's docker-api restarting with the hub, as in an upgrade), instead
of failing at once: a new hub polling its servers in that moment would
forget them. Real sockets: a port that refuses, then an HTTP server that
answers like the engine."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import docker
import pytest

from conftest import load_config
from jupyterhub_swarm import engine_unreachable
from spawner_harness import make_spawner


class Engine(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps([] if "/services" in self.path else {"ApiVersion": "1.41"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawner_on(monkeypatch, port, wait):
    """ann's spawner whose docker client talks to 127.0.0.1:port (the
    client is dockerspawner's class attribute: restored after the test)."""
    spawner = make_spawner(load_config(), "ann")
    spawner.engine_wait = wait
    client = docker.APIClient(base_url=f"tcp://127.0.0.1:{port}", version="1.41")
    monkeypatch.setattr(type(spawner), "_client", client)
    return spawner


def test_a_refused_call_is_made_again_once_the_engine_answers(monkeypatch):
    port = free_port()
    server = None

    def start_later():
        nonlocal server
        time.sleep(2)
        server = HTTPServer(("127.0.0.1", port), Engine)
        server.serve_forever()

    spawner = spawner_on(monkeypatch, port, wait=30)  # first: building it takes seconds
    threading.Thread(target=start_later, daemon=True).start()
    try:
        assert spawner._docker("services") == []
    finally:
        while server is None:
            time.sleep(0.1)
        server.shutdown()


def test_it_gives_up_after_engine_wait(monkeypatch):
    spawner = spawner_on(monkeypatch, free_port(), wait=1)
    with pytest.raises(Exception) as info:
        spawner._docker("services")
    assert engine_unreachable(info.value)


def test_an_error_from_the_engine_is_not_retried():
    assert not engine_unreachable(docker.errors.APIError("409 name conflicts"))

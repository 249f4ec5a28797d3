"""jupyterhub-swarm-health, the hub image's health check, against servers on
127.0.0.1: plain HTTP (bash's /dev/tcp), and with HUB_INTERNAL_SSL_PATH the
hub's TLS port, which asks for a client certificate signed by the hub's CA
(certificates made by certipy, as JupyterHub makes them)."""

import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from certipy import Certipy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jupyterhub-swarm-health"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/hub/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(status=200, context=None):
    handler = type("H", (Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check(port, ssl_path=""):
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HUB_HUB_PORT": str(port),
           "HUB_INTERNAL_SSL_PATH": ssl_path}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True,
                          timeout=60).returncode


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("status,healthy", [(200, True), (503, False)])
def test_plain_http(status, healthy):
    server = serve(status)
    try:
        assert (check(server.server_address[1]) == 0) is healthy
    finally:
        server.shutdown()


def test_nothing_listening_is_unhealthy():
    assert check(closed_port()) != 0


@pytest.fixture
def internal_ssl(tmp_path):
    """The hub's certificates (JupyterHub's layout under internal_certs_location)
    and a TLS server context that, like the hub's, wants a client certificate
    signed by the hub's CA."""
    certs = Certipy(store_dir=str(tmp_path / "internal-ssl"))
    ca = certs.create_ca("hub-ca")
    certs.create_signed_pair("hub-internal", "hub-ca", alt_names=["IP:127.0.0.1"])
    hub = certs.store.get_record("hub-internal")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(hub["files"]["cert"], hub["files"]["key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(ca["files"]["cert"])
    return tmp_path / "internal-ssl", context


def test_internal_ssl_shows_the_hubs_client_certificate(internal_ssl):
    path, context = internal_ssl
    assert (path / "hub-internal" / "hub-internal.crt").is_file()  # the layout the script reads
    server = serve(200, context)
    try:
        assert check(server.server_address[1], str(path)) == 0
    finally:
        server.shutdown()


def test_internal_ssl_with_another_ca_is_refused(internal_ssl, tmp_path):
    _, context = internal_ssl
    other = Certipy(store_dir=str(tmp_path / "other"))
    other.create_ca("other-ca")
    other.create_signed_pair("hub-internal", "other-ca")
    server = serve(200, context)
    try:
        assert check(server.server_address[1], str(tmp_path / "other")) != 0
    finally:
        server.shutdown()


def test_internal_ssl_server_is_not_healthy_over_plain_http(internal_ssl):
    _, context = internal_ssl
    server = serve(200, context)
    try:
        assert check(server.server_address[1]) != 0
    finally:
        server.shutdown()

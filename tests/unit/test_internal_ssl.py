"""Internal TLS settings and the swarm-secret delivery of a server's
certificates, with the spawner built as the hub builds it. The real-swarm
test is tests/e2e/test_31_internal_ssl.py."""

import asyncio
import socket
import stat

from conftest import config_error, load_config
from spawner_harness import RecordingDocker, make_spawner
from jupyterhub_swarm import export_proxy_certs, proxy_cert_files

EXTERNAL = dict(PROXY_SHOULD_START="false", PROXY_API_URL="http://proxy:8001",
                CONFIGPROXY_AUTH_TOKEN="tok")


def test_internal_tls_names_the_hub_and_proxy_hosts_and_speaks_https_to_the_proxy():
    cfg = load_config(HUB_INTERNAL_SSL_PATH="/data/internal-ssl", **EXTERNAL)
    assert cfg.JupyterHub.internal_ssl is True
    assert cfg.JupyterHub.internal_certs_location == "/data/internal-ssl"
    assert cfg.ConfigurableHTTPProxy.api_url == "https://proxy:8001"
    assert cfg.JupyterHub.trusted_alt_names == ["DNS:jupyterhub", "DNS:proxy"]


def test_internal_tls_with_ip_addresses():
    cfg = load_config(HUB_INTERNAL_SSL_PATH="/certs", HUB_CONNECT_IP="10.0.0.5",
                      **dict(EXTERNAL, PROXY_API_URL="http://10.0.0.6:8001"))
    assert cfg.JupyterHub.trusted_alt_names == ["IP:10.0.0.5", "IP:10.0.0.6"]
    assert cfg.ConfigurableHTTPProxy.api_url == "https://10.0.0.6:8001"


def test_without_internal_tls_nothing_changes():
    cfg = load_config(**EXTERNAL)
    assert "internal_ssl" not in cfg.JupyterHub
    assert cfg.ConfigurableHTTPProxy.api_url == "http://proxy:8001"


def test_the_idle_culler_speaks_tls_to_the_hub():
    cfg = load_config(HUB_INTERNAL_SSL_PATH="/data/internal-ssl", HUB_CULL_IDLE_TIMEOUT="600",
                      **EXTERNAL)
    command = cfg.JupyterHub.services[0]["command"]
    assert "--ssl-enabled=true" in command
    assert "--internal-certs-location=/data/internal-ssl" in command
    assert "--url=https://127.0.0.1:8001/hub/api" in command  # in the cert: IP:127.0.0.1
    plain = load_config(HUB_CULL_IDLE_TIMEOUT="600", **EXTERNAL).JupyterHub.services[0]["command"]
    assert not [arg for arg in plain if "ssl" in arg]


def test_relative_internal_ssl_path_is_refused():
    message = config_error(HUB_INTERNAL_SSL_PATH="certs")
    assert "HUB_INTERNAL_SSL_PATH='certs'" in message and "absolute path" in message


class SecretsDocker(RecordingDocker):
    """Also keeps swarm secrets, as the engine would."""

    def __init__(self, network):
        super().__init__(network)
        self.secrets = {}
        self.removed_services = []

    async def __call__(self, method, *args, **kwargs):
        if method == "create_secret":
            name, data = args
            assert name not in [s["Spec"]["Name"] for s in self.secrets.values()]
            sid = f"sec{len(self.secrets) + len(self.removed_services) * 10}"
            self.secrets[sid] = {"ID": sid, "Spec": {"Name": name, "Labels": kwargs["labels"]},
                                 "data": data}
            return {"ID": sid}
        if method == "secrets":
            key, value = kwargs["filters"]["label"].split("=", 1)
            return [s for s in self.secrets.values() if s["Spec"]["Labels"].get(key) == value]
        if method == "remove_secret":
            del self.secrets[args[0]]
            return None
        if method == "remove_service":
            self.removed_services.append(args[0])
            return None
        return await super().__call__(method, *args, **kwargs)


def tls_spawner(tmp_path, username="alice"):
    """A spawner with internal TLS, its CAs made by certipy as the hub does."""
    from certipy import Certipy

    store = Certipy(store_dir=str(tmp_path))
    store.create_ca("notebooks-ca")
    cfg = load_config(HUB_INTERNAL_SSL_PATH=str(tmp_path), **EXTERNAL)
    spawner = make_spawner(cfg, username)
    spawner.internal_ssl = True
    spawner.internal_certs_location = str(tmp_path)
    spawner.internal_trust_bundles = {
        "notebooks-ca": store.store.get_record("notebooks-ca")["files"]["cert"]}
    docker = spawner.docker = SecretsDocker(spawner.network_name)
    return spawner, docker


async def spawn_with_tls(spawner):
    """What User.spawn does with internal_ssl, then start()."""
    paths = await spawner.create_certs()
    spawner.cert_paths = await spawner.move_certs(paths)
    return paths, await spawner.start()


def cert_names(pem):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_certificates_become_swarm_secrets_of_the_service(tmp_path):
    spawner, docker = tls_spawner(tmp_path)
    paths, address = asyncio.run(spawn_with_tls(spawner))
    moved = spawner.cert_paths
    spec = docker.created["task_template"]
    refs = spec["ContainerSpec"]["Secrets"]
    by_file = {r["File"]["Name"]: r for r in refs}
    # every path the server is told about is a secret file of the service ...
    assert set(moved) == {"keyfile", "certfile", "cafile"}
    for key, path in moved.items():
        directory, name = path.rsplit("/", 1)
        assert directory == "/run/secrets" and name in by_file, (key, path)
        # ... holding the file the hub made for it
        secret = docker.secrets[by_file[name]["SecretID"]]
        with open(paths[key], "rb") as f:
            assert secret["data"] == f.read()
        assert secret["Spec"]["Labels"] == {"jupyterhub-swarm.server": "jupyter-alice"}
    key_file = by_file[moved["keyfile"].rsplit("/", 1)[1]]["File"]
    assert key_file["Mode"] == 0o400 and (key_file["UID"], key_file["GID"]) == ("1000", "100")
    assert f"JUPYTERHUB_SSL_KEYFILE={moved['keyfile']}" in spec["ContainerSpec"]["Env"]
    # the hub and the proxy reach the server by a name of this spawn: a
    # network alias of the service, which its certificate holds
    host, port = address
    assert host.startswith("jupyter-alice-") and port == 8888
    (network,) = spec["Networks"]
    assert network["Target"] == spawner.network_name and network["Aliases"] == [host]
    with open(paths["certfile"], "rb") as f:
        assert host in cert_names(f.read())


def test_each_spawn_has_its_own_name(tmp_path):
    spawner, docker = tls_spawner(tmp_path)
    _, (first, _) = asyncio.run(spawn_with_tls(spawner))
    _, (second, _) = asyncio.run(spawn_with_tls(spawner))
    assert first != second


def test_secrets_are_per_spawn_short_and_removed_with_the_service(tmp_path):
    spawner, docker = tls_spawner(tmp_path, "a" * 32)
    asyncio.run(spawn_with_tls(spawner))
    first_names = sorted(s["Spec"]["Name"] for s in docker.secrets.values())
    assert len(first_names) == 3 and all(len(n) <= 64 for n in first_names), first_names
    assert len(spawner._ssl_name) <= 63  # a DNS label
    # a new spawn replaces what a former one left behind
    asyncio.run(spawn_with_tls(spawner))
    second_names = sorted(s["Spec"]["Name"] for s in docker.secrets.values())
    assert len(second_names) == 3 and not set(first_names) & set(second_names)
    asyncio.run(spawner._remove_service())
    assert docker.secrets == {} and docker.removed_services


def test_stop_removes_the_secrets(tmp_path):
    spawner, docker = tls_spawner(tmp_path)

    async def run():
        await spawn_with_tls(spawner)
        assert len(docker.secrets) == 3
        await spawner.stop()

    asyncio.run(run())
    assert docker.secrets == {}


def test_proxy_files_are_written_whole_for_the_proxy_user(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    certs = {}
    for component in ("proxy-api", "proxy-client"):
        certs[component] = {}
        for key in ("keyfile", "certfile"):
            path = src / f"{component}.{key}"
            path.write_text(f"{component} {key}")
            certs[component][key] = str(path)
    bundles = {}
    for ca in ("proxy-api-ca", "proxy-client-ca"):
        (src / ca).write_text(f"{ca} bundle")
        bundles[ca] = str(src / ca)
    out = tmp_path / "out"
    out.mkdir()
    files = proxy_cert_files(certs, bundles)
    export_proxy_certs(files, str(out), (65534, 65534))
    written = {p.name: p for p in out.iterdir()}
    assert set(written) == {"api.key", "api.crt", "api-ca.crt",
                            "client.key", "client.crt", "client-ca.crt"}
    assert written["api.key"].read_text() == "proxy-api keyfile"
    assert written["client-ca.crt"].read_text() == "proxy-client-ca bundle"
    assert stat.S_IMODE(written["client.key"].stat().st_mode) == 0o400
    assert stat.S_IMODE(written["api.crt"].stat().st_mode) == 0o444


def test_the_hub_waits_for_an_external_proxy_that_is_not_listening_yet():
    """A real port that refuses, then a real proxy API answering there."""
    import json
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    from jupyterhub.app import JupyterHub

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(PROXY_SHOULD_START="false", PROXY_API_URL=f"http://127.0.0.1:{port}",
                      CONFIGPROXY_AUTH_TOKEN="tok")
    proxy_class = cfg.JupyterHub.proxy_class
    app = JupyterHub(config=cfg)
    proxy = proxy_class(app=app, parent=app, config=cfg, hub=None, public_url="http://x/")

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"/": {"target": "http://hub:8001", "jupyterhub": True}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")  # as CHP does
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def late_proxy():
        import time
        time.sleep(1.5)
        server = HTTPServer(("127.0.0.1", port), Api)
        server.handle_request()

    thread = Thread(target=late_proxy)
    thread.start()
    routes = asyncio.run(proxy.get_all_routes())
    thread.join()
    assert routes["/"]["target"] == "http://hub:8001"

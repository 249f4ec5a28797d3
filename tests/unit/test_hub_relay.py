"""HUB_API_RELAY: user servers reach the hub's API through a relay that
keeps its address when the hub restarts. The real-swarm test is
tests/e2e/test_05_hub_restart.py (a fresh login reaching a singleuser 6.x
server right after the hub restarted)."""

import asyncio

import pytest

from conftest import config_error, load_config
from spawner_harness import make_spawner
from jupyterhub_swarm import certificate_names, renew_hub_certificate

EXTERNAL = dict(PROXY_SHOULD_START="false", PROXY_API_URL="http://proxy:8001",
                CONFIGPROXY_AUTH_TOKEN="tok")


def server_env(cfg):
    return make_spawner(cfg, "ann").get_env()


def test_without_a_relay_servers_dial_the_hub_itself():
    cfg = load_config(**EXTERNAL)
    assert "hub_connect_url" not in cfg.Spawner
    env = server_env(cfg)
    assert env["JUPYTERHUB_API_URL"] == "http://jupyterhub:8001/hub/api"


def test_servers_reach_the_api_through_the_relay_at_the_hubs_port():
    env = server_env(load_config(HUB_API_RELAY="hub-relay", **EXTERNAL))
    assert env["JUPYTERHUB_API_URL"] == "http://hub-relay:8001/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"] == "http://hub-relay:8001/hub/api/users/ann/activity"
    cfg = load_config(HUB_API_RELAY="relay.lab.example", HUB_HUB_PORT="9001", **EXTERNAL)
    assert cfg.Spawner.hub_connect_url == "http://relay.lab.example:9001"


def test_an_ip_relay_and_an_ipv6_one():
    assert load_config(HUB_API_RELAY="10.0.0.7", **EXTERNAL).Spawner.hub_connect_url == \
        "http://10.0.0.7:8001"
    assert load_config(HUB_API_RELAY="fd00::7", **EXTERNAL).Spawner.hub_connect_url == \
        "http://[fd00::7]:8001"


def test_with_internal_tls_the_relay_speaks_https_and_is_in_the_hubs_certificate():
    cfg = load_config(HUB_API_RELAY="hub-relay", HUB_INTERNAL_SSL_PATH="/data/internal-ssl",
                      **EXTERNAL)
    assert cfg.Spawner.hub_connect_url == "https://hub-relay:8001"
    # the relay passes TLS through: servers check the hub's certificate
    # against the name they dialled
    assert cfg.JupyterHub.trusted_alt_names == ["DNS:jupyterhub", "DNS:hub-relay", "DNS:proxy"]


@pytest.mark.parametrize("value", [
    "http://hub-relay", "hub-relay:8001", "-relay", "hub relay", "relay-.lab", "a" * 64, "hub_relay/x",
])
def test_a_bad_relay_is_refused_naming_the_variable_the_value_and_the_forms(value):
    message = config_error(HUB_API_RELAY=value, **EXTERNAL)
    assert f"HUB_API_RELAY={value!r}" in message, message
    assert "a host name or IP address, without scheme or port" in message, message


# -- a hub certificate from before the relay ---------------------------------------


def start_hub_tls(path, names):
    """JupyterHub's own internal-TLS start (init_internal_ssl) on the store
    at `path`: (the names in the hub's certificate, its file, its CA's)."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.httpclient import JupyterHubHTTPClient

    async def start():
        app = JupyterHub(internal_ssl=True, internal_certs_location=str(path),
                         trusted_alt_names=list(names))
        app.init_internal_ssl()
        JupyterHubHTTPClient.clear_instance()
        return app.internal_ssl_cert

    cert = asyncio.run(start())
    with open(cert, "rb") as f:
        return certificate_names(f.read()), cert


def ca_cert(path, name="hub-ca"):
    from certipy import CertStore
    from cryptography import x509

    with open(CertStore(containing_dir=str(path)).get_record(name)["files"]["cert"], "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


OLD = ["DNS:jupyterhub", "DNS:proxy"]
NEW = ["DNS:jupyterhub", "DNS:hub-relay", "DNS:proxy"]


def test_jupyterhub_alone_keeps_a_hub_certificate_without_the_relay(tmp_path):
    names, _ = start_hub_tls(tmp_path, OLD)
    assert "DNS:hub-relay" not in names
    names, _ = start_hub_tls(tmp_path, NEW)  # what an upgrade would get without the renewal
    assert "DNS:hub-relay" not in names, names


def test_an_old_hub_certificate_is_signed_again_by_the_same_ca_with_the_relays_name(tmp_path):
    from cryptography import x509

    start_hub_tls(tmp_path, OLD)
    ca_before = ca_cert(tmp_path)
    assert renew_hub_certificate(str(tmp_path), NEW) == ["DNS:hub-relay"]
    names, cert_file = start_hub_tls(tmp_path, NEW)
    assert {"DNS:jupyterhub", "DNS:hub-relay", "DNS:proxy"} <= names, names
    assert ca_cert(tmp_path) == ca_before  # servers and the proxy trust this CA already
    with open(cert_file, "rb") as f:
        x509.load_pem_x509_certificate(f.read()).verify_directly_issued_by(ca_before)
    # and once it has every name, it is kept
    assert renew_hub_certificate(str(tmp_path), NEW) == []
    assert start_hub_tls(tmp_path, NEW)[0] == names


def test_ip_names_match_in_any_spelling_and_a_first_start_has_nothing_to_renew(tmp_path):
    assert renew_hub_certificate(str(tmp_path / "none"), NEW) == []
    assert not (tmp_path / "none").exists()
    start_hub_tls(tmp_path, ["IP:10.0.0.5"])
    # JupyterHub's default names hold "IP:0:0:0:0:0:0:0:1"
    assert renew_hub_certificate(str(tmp_path), ["IP:10.0.0.5", "IP:::1"]) == []

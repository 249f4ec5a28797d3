"""Security against the real hub: TLS on the public port, admin accounts made
at start-up, password and user-name rules, lock-out, closed sign-up, and
secrets kept out of the hub's logs and the user's pages.

Two deployments of their own (TLS with a successful spawn; a CIFS volume
whose mount fails, since these machines have no CIFS client).
"""

import datetime
import ipaddress
import re

import pytest
import requests

from . import swarm
from .conftest import PASSWORD, SETTINGS, deploy, observe, phase
from .hubclient import start_and_wait

ADMIN_PASSWORD = "Adm1n-Bootstrap-Pw"
CIFS_PASSWORD = "Cifs-S3cret-Pw"
SPAWNER = {k: v for k, v in SETTINGS.items() if k.startswith(("SPAWNER_CPU", "SPAWNER_MEM", "SPAWNER_PULL"))}


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1, as an operator's files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2e test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    for f in directory.iterdir():
        f.chmod(0o644)  # the official proxy image runs as nobody
    directory.chmod(0o755)
    return directory / "ca.pem"


@pytest.fixture(scope="module")
def tls_hub(e2e_env, tmp_path_factory):
    ssl_dir = tmp_path_factory.mktemp("ssl")
    ca = make_certificates(ssl_dir)
    return deploy(
        tls_ca=str(ca),
        JUPYTERHUB_SSL_DIR=str(ssl_dir),
        HUB_SSL_KEY="/srv/jupyterhub/ssl/key.pem",
        HUB_SSL_CERT="/srv/jupyterhub/ssl/cert.pem",
        AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        AUTH_CHECK_COMMON_PASSWORD="true",
        AUTH_MINIMUM_PASSWORD_LENGTH="10",
        HUB_LOG_LEVEL="debug",
        SPAWNER_DEBUG="true",
        **SPAWNER,
    )


def logs_and_pages_are_clean(texts, secrets):
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret appears in {where}"


def test_tls_accounts_and_secrets(tls_hub):
    hub = tls_hub
    with phase("security: HTTPS only on the public port"):
        assert requests.get(hub.base_url + "/hub/health", verify=hub.tls_ca, timeout=10).ok
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{hub.port}/hub/health", timeout=10)

    with phase("security: the admin account exists before anyone signs up"):
        squatter = hub.client()
        message = squatter.signup("admin", "Squatter-pass-1")
        assert "already in use" in message, message
        assert not squatter.login("admin", "Squatter-pass-1").ok
        admin = hub.client()
        assert admin.login("admin", ADMIN_PASSWORD).ok
        assert admin.api("GET", "/user").json()["admin"] is True

    with phase("security: password rules at sign-up"):
        client = hub.client()
        short = client.signup("erin", "Sh0rt-pw")
        common = client.signup("erin", "qwertyuiop")
        observe(f"sign-up with a short password: {short!r}; with a common one: {common!r}")
        for message in (short, common):
            assert "at least 10" in message and "too common" in message, message
        assert not client.login("erin", "qwertyuiop").ok
        assert "sent to the admin" in client.signup("erin", PASSWORD)

    with phase("security: hostile user names"):
        seen = {}
        for name in ("../x", "a/b", "..", "a b", "ünï", "x" * 40, "-lead", "a,b"):
            message = hub.client().signup(name, PASSWORD)
            seen[name] = message
            assert "is not allowed" in message, (name, message)
        observe(f"refused user names and what sign-up said: {seen}")
        users = {u["name"] for u in admin.api("GET", "/users").json()}
        assert not users & set(seen), users
        # upper case is folded: 'Carol' and 'carol' are one account
        assert "sent to the admin" in hub.client().signup("Carol", PASSWORD)
        assert "already in use" in hub.client().signup("carol", PASSWORD)
        admin.authorize("carol")
        carol = hub.client()
        assert carol.login("CAROL", PASSWORD).ok
        assert carol.api("GET", "/user").json()["name"] == "carol"

    with phase("security: lock-out after 3 wrong passwords"):
        admin.authorize("erin")
        erin = hub.client()
        for _ in range(3):
            assert not erin.login("erin", "wrong-" + PASSWORD).ok
        locked = erin.login("erin", PASSWORD)
        observe(f"right password after 3 wrong ones: ok={locked.ok} error={locked.error!r}")
        assert not locked.ok
        assert carol.api("GET", "/user").ok  # others are not affected

    with phase("security: a user's server over HTTPS"):
        start_and_wait(carol, "carol")
        carol.open_server("carol")
        assert carol.server_status("carol")["started"]

    with phase("security: no secret in the hub's debug log"):
        logs = swarm.hub_logs(100000)
        assert "DEBUG" in logs or "[D " in logs, "the hub did not log at debug level"
        token = hub.env["CONFIGPROXY_AUTH_TOKEN"]
        logs_and_pages_are_clean({"hub log": logs}, [ADMIN_PASSWORD, PASSWORD, token])


@pytest.fixture(scope="module")
def cifs_hub(tls_hub):  # after the TLS deployment: deploy() replaces it
    return deploy(
        AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        AUTH_ENABLE_SIGNUP="false",
        HUB_LOG_LEVEL="debug",
        SPAWNER_DEBUG="true",
        SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs",
        SPAWNER_PERSISTENCE_CIFS_HOST="127.0.0.1",
        SPAWNER_PERSISTENCE_CIFS_DEVICE="//127.0.0.1/share",
        SPAWNER_PERSISTENCE_CIFS_OPTS=f",username=jh,password={CIFS_PASSWORD},vers=3.0",
        **SPAWNER,
    )


def test_closed_signup_and_cifs_credentials(cifs_hub):
    hub = cifs_hub
    with phase("security: sign-up closed"):
        anonymous = hub.client()
        assert anonymous.get("/hub/signup").status_code == 404
        admin = hub.client()
        assert admin.login("admin", ADMIN_PASSWORD).ok

    with phase("security: a CIFS mount that fails does not show its password"):
        r = admin.start_server("admin")
        events = admin.progress_events("admin", timeout=120)
        message = events[-1].get("message", "")
        observe(f"CIFS spawn without a CIFS client: HTTP {r.status_code}; user sees {message!r}")
        assert events[-1].get("failed"), events
        assert re.search(r"no such device|mount", message), message
        page = admin.get("/hub/spawn-pending/admin").text
        logs = swarm.hub_logs(100000)
        logs_and_pages_are_clean(
            {"hub log": logs, "spawn page": page, "progress": str(events), "API answer": r.text},
            [CIFS_PASSWORD, ADMIN_PASSWORD, hub.env["CONFIGPROXY_AUTH_TOKEN"]],
        )

"""Internal TLS (HUB_INTERNAL_SSL_PATH) on the real swarm.

The hub makes each server's certificate and hands it to the user's service
as swarm secrets (not dockerspawner's docker volume on the hub's node, which
a service on another node never sees); the proxy gets its files through the
volume it shares with the hub. Shown here: a user logs in and works with
their server through the proxy; the server, the hub and the proxy's API
refuse plain HTTP and clients without a certificate of the hub's CAs, and
answer one that has it; the secrets go with the server; a hub restart keeps
the running server reachable.
"""

import json
from urllib.parse import urlsplit

import pytest

from . import swarm
from .conftest import SETTINGS, deploy, observe, phase
from .hubclient import start_and_wait
from .swarm import wait_for

ADMIN_PASSWORD = "Adm1n-Internal-Tls"
SSL_PATH = "/data/internal-ssl"
SERVICE = "jupyter-admin"
LABEL = "jupyterhub-swarm.server"
SPAWNER = {k: v for k, v in SETTINGS.items() if k.startswith(("SPAWNER_CPU", "SPAWNER_MEM", "SPAWNER_PULL"))}

# Runs in the hub's container (on the user network, with the hub's own
# client certificate): GET each url three ways and print what happened.
PROBE = r"""
import json, os, ssl, sys, urllib.request as u
d = sys.argv[1]
token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
def get(url, context=None):
    req = u.Request(url, headers={"Authorization": "token " + token})
    try:
        with u.urlopen(req, timeout=10, context=context) as r:
            return "HTTP %d" % r.status
    except u.HTTPError as e:
        return "HTTP %d" % e.code
    except Exception as e:
        return "refused: %s: %s" % (type(e).__name__, e)
verified = ssl.create_default_context(cafile=d + "/hub-ca_trust.crt")
verified.load_cert_chain(d + "/hub-internal/hub-internal.crt", d + "/hub-internal/hub-internal.key")
anonymous = ssl.create_default_context()
anonymous.check_hostname = False
anonymous.verify_mode = ssl.CERT_NONE
out = {}
for name, host_path in json.loads(sys.argv[2]).items():
    out[name] = {
        "plain http": get("http://" + host_path),
        "https without a client certificate": get("https://" + host_path, anonymous),
        "https with the hub's certificate": get("https://" + host_path, verified),
    }
print(json.dumps(out))
"""


def probe(targets):
    container = swarm.hub_container()
    assert container, "no running hub container"
    out = swarm.docker("exec", container, "python3", "-c", PROBE, SSL_PATH, json.dumps(targets)).stdout
    return json.loads(out)


def ssl_secrets(service):
    out = swarm.docker("secret", "ls", "--filter", f"label={LABEL}={service}",
                       "--format", "{{.Name}}").stdout
    return sorted(out.split())


@pytest.fixture(scope="module")
def tls_hub(e2e_env):
    return deploy(
        HUB_INTERNAL_SSL_PATH=SSL_PATH,
        AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        # the idle culler runs (it culls nothing within the test) and must
        # reach the hub's API over TLS
        HUB_CULL_IDLE_TIMEOUT="3600",
        HUB_CULL_EVERY="5",
        **SPAWNER,
    )


def test_internal_tls_end_to_end(tls_hub):
    hub = tls_hub
    admin = hub.client()
    assert admin.login("admin", ADMIN_PASSWORD).ok

    with phase("internal TLS: a server starts and answers through the proxy"):
        start_and_wait(admin, "admin")
        admin.open_server("admin")
        assert admin.server_status("admin")["started"]
        admin.put_file("persistence/tls.txt", "kept")  # the volume
        # by a network alias of this spawn, which its certificate names
        route = swarm.proxy_routes()["/user/admin"]["target"]
        host = urlsplit(route).hostname
        assert route == f"https://{host}:8888" and host.startswith(SERVICE + "-"), route

    with phase("internal TLS: certificates are swarm secrets, not a volume"):
        spec = swarm.service_inspect(SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
        env = dict(item.split("=", 1) for item in spec.get("Env") or [])
        files = {s["File"]["Name"]: s for s in spec.get("Secrets") or []}
        observe(f"internal TLS: secrets of {SERVICE}: "
                f"{ {n: (s['SecretName'], oct(s['File']['Mode'])) for n, s in files.items()} }")
        for var in ("JUPYTERHUB_SSL_KEYFILE", "JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_CLIENT_CA"):
            path = env.get(var, "")
            assert path.startswith("/run/secrets/"), (var, path)
            assert path.rsplit("/", 1)[1] in files, (var, path, list(files))
        assert files["jupyterhub-ssl.key"]["File"]["Mode"] == 0o400
        assert env["JUPYTERHUB_API_URL"].startswith("https://"), env["JUPYTERHUB_API_URL"]
        assert sorted(s["SecretName"] for s in files.values()) == ssl_secrets(SERVICE)
        volumes = swarm.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert not [v for v in volumes if "ssl-admin" in v], volumes

    with phase("internal TLS: only clients with the hub's certificates are answered"):
        hub_port = 8001
        seen = probe({
            "user server": f"{host}:8888/user/admin/api",
            "hub": f"jupyterhub:{hub_port}/hub/health",
            "proxy API": "proxy-api:8001/api/routes",
        })
        observe(f"internal TLS probes: {seen}")
        for name, results in seen.items():
            assert results["https with the hub's certificate"] == "HTTP 200", (name, results)
            assert results["plain http"].startswith("refused"), (name, results)
            assert results["https without a client certificate"].startswith("refused"), (name, results)

    with phase("internal TLS: the secrets go with the server"):
        assert ssl_secrets(SERVICE)
        admin.stop_server("admin")
        wait_for(lambda: not ssl_secrets(SERVICE), 30, f"the TLS secrets of {SERVICE} to go")

    with phase("internal TLS: a hub restart keeps the running server reachable"):
        start_and_wait(admin, "admin")
        admin.open_server("admin")
        before = admin.server_status("admin")["started"]
        old_hub = swarm.hub_container()
        swarm.docker("service", "update", "--force", "--detach", swarm.HUB_SERVICE, timeout=60)
        wait_for(lambda: (swarm.hub_container() or old_hub) != old_hub, 120, "a new hub task")
        hub.wait_healthy(180)
        try:
            wait_for(lambda: admin.user_model("admin")["servers"].get("", {}).get("ready"), 60,
                     "the new hub to report the server ready")
        except AssertionError:
            logs = swarm.hub_logs(100000).splitlines()
            print("\n".join(line for line in logs if "GET /hub/api/users/admin" not in line
                            and "XSRF" not in line and "idle-culler" not in line)[-20000:])
            raise
        assert admin.server_status("admin")["started"] == before
        assert admin.get_file("persistence/tls.txt") == "kept"
        assert len(ssl_secrets(SERVICE)) == 3
        logs = swarm.hub_logs(400)
        assert "Traceback" not in logs, logs[-3000:]

    with phase("internal TLS: the idle culler reaches the hub's API"):
        def culler_asked():
            return any("200 GET /hub/api/users" in line and "idle-culler" in line
                       for line in swarm.hub_logs(2000).splitlines())
        wait_for(culler_asked, 30, "the idle culler to list users over TLS")
        logs = swarm.hub_logs(2000)
        assert "Error" not in "\n".join(l for l in logs.splitlines() if "culler" in l.lower()), logs[-3000:]

"""Docker CLI helpers for the end-to-end tests: deploy the stack, inspect the
services the hub creates, tear everything down again.

Everything goes through the `docker` command line (the operator's tool), not
the Python SDK. The client is $DOCKER, else the first `docker` on PATH.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.swarm.yml"
DOCKER = os.environ.get("DOCKER") or shutil.which("docker") or "/usr/bin/docker"
STACK = os.environ.get("JHSWARM_E2E_STACK", "jhe2e")
NETWORK = "jupyterhub_network"
INTERNAL_NETWORK = f"{STACK}_jupyterhub_internal"  # hub <-> proxy API <-> database
HUB_SERVICE = f"{STACK}_jupyterhub"
PROXY_SERVICE = f"{STACK}_proxy"
DOCKER_API_SERVICE = f"{STACK}_docker-api"  # the engine's API, filtered, for the hub
DOCKER_NETWORK = f"{STACK}_jupyterhub_docker"  # hub <-> docker-api
RELAY_SERVICE = f"{STACK}_network-anchor"  # as hub-relay: the servers' way to the hub's API
DATA_VOLUME = f"{STACK}_jupyterhub-data"
# docker-compose.nfs.yml's share root in the hub (keeps its options: removed)
SHARE_ROOT_VOLUME = f"{STACK}_jupyterhub-share-root"
USER_SERVICE_PREFIX = "jupyter-"
PREPULL_JOB_PREFIX = "jupyter-prepull--"  # jupyterhub_swarm.PREPULL_PREFIX
USER_VOLUME_PREFIX = "jupyterhub-user-"

# The engine the helpers below talk to (None: the docker CLI's default, the
# local engine) and the address where the proxy's host-mode port answers.
# tests/e2e_cluster points them at the manager of scripts/cluster.sh with
# target(): HOST="unix:///run/jhs-cluster/node1.sock", "10.200.0.11".
HOST = None
PUBLIC_ADDRESS = "127.0.0.1"

# Variables the compose file reads: never inherited from the calling shell,
# so a deploy sees exactly what the test asked for.
_COMPOSE_PREFIXES = ("HUB_", "SPAWNER_", "AUTH_", "PROXY_")
_COMPOSE_NAMES = {"JUPYTERHUB_IMAGE", "PUBLIC_PORT", "CONFIGPROXY_AUTH_TOKEN",
                  "JUPYTERHUB_SSL_DIR", "PROXY_IMAGE", "DOCKER_SOCKET",
                  "JUPYTERHUB_EXTRA_CONFIG"}


class DockerError(RuntimeError):
    pass


def log(message):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def docker(*args, check=True, timeout=180, env=None, cwd=None, input_text=None):
    """Run the docker CLI; return the CompletedProcess (text)."""
    proc = subprocess.run(
        [DOCKER, *(("-H", HOST) if HOST else ()), *args],
        capture_output=True,
        text=True,
        input=input_text,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise DockerError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


@contextmanager
def target(host, public_address):
    """Inside the block, the helpers talk to the engine at `host` (a docker
    -H value) and the stack's public port answers at `public_address`."""
    global HOST, PUBLIC_ADDRESS
    saved = HOST, PUBLIC_ADDRESS
    HOST, PUBLIC_ADDRESS = host, public_address
    try:
        yield
    finally:
        HOST, PUBLIC_ADDRESS = saved


def docker_json(*args):
    return json.loads(docker(*args).stdout)


def wait_for(predicate, timeout, what, interval=0.5):
    """Call predicate until it returns something truthy; return that value.

    Fails with `what` and the time waited when `timeout` seconds pass.
    """
    started = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        waited = time.monotonic() - started
        if waited > timeout:
            raise AssertionError(f"timed out after {waited:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port(preferred=18000, tries=200):
    for port in range(preferred, preferred + tries):
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {preferred}..{preferred + tries}")


# -- services, tasks, containers ------------------------------------------------


def service_names(prefix=""):
    out = docker("service", "ls", "--format", "{{.Name}}").stdout.split()
    return [name for name in out if name.startswith(prefix)]


# -- a service's spec, as the rule and profile tests read it -------------------



def spec_of(service):
    found = service_inspect(service)
    assert found, f"no service {service}; services: {user_services()}"
    return found["Spec"]


def image_of(spec):
    return spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]


def spec_env(spec):
    env = spec["TaskTemplate"]["ContainerSpec"].get("Env") or []
    return dict(e.split("=", 1) for e in env)


def constraints_of(spec):
    return sorted(spec["TaskTemplate"].get("Placement", {}).get("Constraints") or [])


def generic_resources(spec):
    reservations = spec["TaskTemplate"].get("Resources", {}).get("Reservations") or {}
    return reservations.get("GenericResources") or []


def network_id(name):
    return docker("network", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def hub_services():
    """Every service the hub made: its user servers and pre-pull jobs."""
    return service_names(USER_SERVICE_PREFIX)


def user_services():
    """The hub's user servers (one service per running server), not its
    pre-pull jobs, which come and go by themselves."""
    return [s for s in hub_services() if not s.startswith(PREPULL_JOB_PREFIX)]


def service_inspect(name):
    """The service's inspect document, or None if there is no such service."""
    proc = docker("service", "inspect", name, check=False)
    if proc.returncode != 0:
        if "no such service" in (proc.stderr + proc.stdout).lower():
            return None
        raise DockerError(f"docker service inspect {name}: {proc.stderr}")
    return json.loads(proc.stdout)[0]


def service_tasks(name):
    """Full inspect documents of the service's tasks (newest first)."""
    proc = docker("service", "ps", "-q", "--no-trunc", name, check=False)
    if proc.returncode != 0:
        return []
    ids = proc.stdout.split()
    if not ids:
        return []
    proc = docker("inspect", *ids, check=False)  # tasks may vanish meanwhile
    tasks = json.loads(proc.stdout or "[]")
    return sorted(tasks, key=lambda t: t.get("CreatedAt", ""), reverse=True)


def running_task(name):
    for task in service_tasks(name):
        if task["Status"]["State"] == "running" and task["DesiredState"] == "running":
            return task
    return None


def containers(all_states=True):
    """[(container id, swarm service name)] of every container."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if all_states else [])
    ids = docker(*args).stdout.split()
    if not ids:
        return []
    fmt = '{{.Id}} {{index .Config.Labels "com.docker.swarm.service.name"}}'
    out = docker("inspect", "--format", fmt, *ids, check=False).stdout
    return [tuple((line.split(" ", 1) + [""])[:2]) for line in out.splitlines() if line]


def container_of(service):
    """Id of the service's running task's container, or None."""
    task = running_task(service)
    if not task:
        return None
    return task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")


def hub_container():
    """Id of the running hub task's container, or None."""
    return container_of(HUB_SERVICE)


def hub_logs(tail=300):
    """Logs of the current hub container (falls back to `docker service logs`)."""
    container = hub_container()
    if container:
        proc = docker("logs", "--tail", str(tail), container, check=False)
    else:
        proc = docker("service", "logs", "--raw", "--tail", str(tail), HUB_SERVICE, check=False)
    return proc.stdout + proc.stderr


def node_id():
    return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


def node_labels():
    return docker_json("node", "inspect", "self")[0]["Spec"].get("Labels") or {}


def label_node(key, value):
    docker("node", "update", "--label-add", f"{key}={value}", node_id())


def unlabel_node(key):
    if key in node_labels():
        docker("node", "update", "--label-rm", key, node_id())


# -- deploy / teardown ---------------------------------------------------------


def deploy_env(values):
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(_COMPOSE_PREFIXES) or k in _COMPOSE_NAMES)
    }
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env


def stack_deploy(values, extra_files=(), resolve_image="never"):
    """`docker stack deploy` the project's compose file with these variables,
    and after it `extra_files` (opt-in compose files, paths from the
    repository's root), merged by docker as with several -c.
    `resolve_image`: the CLI's --resolve-image; "never" for the local images
    of most tests (no registry knows them), None for the CLI's default
    (`always`: it asks the registry for each image's digest and pins the
    services to it, as an operator's deploy does; test_26_registry)."""
    files = [a for f in extra_files for a in ("-c", str(f))]
    resolve = ("--resolve-image", resolve_image) if resolve_image else ()
    docker(
        "stack", "deploy", *resolve,
        "-c", str(COMPOSE_FILE), *files, STACK,
        env=deploy_env(values), cwd=str(ROOT),
    )


def cleanup(timeout=120):
    """Remove the stack, the hub's user services, the network and the test
    volumes. Idempotent; leaves dockerd and the swarm running."""
    started = time.monotonic()
    for name in hub_services():
        docker("service", "rm", name, check=False)
    if service_names(f"{STACK}_"):
        docker("stack", "rm", STACK, check=False)

    def gone():
        if service_names(f"{STACK}_") or hub_services():
            return False
        for _, service in containers():
            if service.startswith((f"{STACK}_", USER_SERVICE_PREFIX)):
                return False
        return True

    wait_for(gone, timeout, "stack and user services (and their containers) to go")

    def networks_gone():
        names = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        left = [n for n in (NETWORK, INTERNAL_NETWORK) if n in names]
        for name in left:
            # `stack rm` may have run while user services still used it
            docker("network", "rm", name, check=False)
        return not left

    wait_for(networks_gone, timeout, f"networks {NETWORK}, {INTERNAL_NETWORK} to go", interval=1)

    volumes = [
        v
        for v in docker("volume", "ls", "-q").stdout.split()
        if v in (DATA_VOLUME, f"{STACK}_jupyterhub-ssl", f"{STACK}_jupyterhub-proxy-certs",
                 SHARE_ROOT_VOLUME)
        or v.startswith(USER_VOLUME_PREFIX)
    ]
    # internal TLS secrets of user services removed above without the hub
    for secret in docker("secret", "ls", "-q", "--filter", "label=jupyterhub-swarm.server").stdout.split():
        docker("secret", "rm", secret, check=False)

    def volumes_gone():
        left = []
        for v in volumes:
            proc = docker("volume", "rm", v, check=False)
            if proc.returncode != 0 and "no such volume" not in proc.stderr.lower():
                left.append(v)
        volumes[:] = left
        return not left

    if volumes:
        wait_for(volumes_gone, timeout, f"volumes {volumes} to be removable", interval=1)
    log(f"cleanup done in {time.monotonic() - started:.1f}s")


def proxy_routes():
    """configurable-http-proxy's routing table, read from inside the hub's
    container (the proxy API is only on the overlay network)."""
    script = (
        "import json, os, ssl, urllib.request as u\n"
        "d, c = os.environ.get('HUB_INTERNAL_SSL_PATH'), None\n"
        "if d:  # internal TLS: the proxy's API wants the hub's certificate\n"
        "    c = ssl.create_default_context(cafile=d + '/hub-ca_trust.crt')\n"
        "    c.load_cert_chain(d + '/hub-internal/hub-internal.crt', d + '/hub-internal/hub-internal.key')\n"
        "f = os.environ.get('CONFIGPROXY_AUTH_TOKEN_FILE')  # docker-compose.secrets.yml\n"
        "t = open(f).read().strip() if f else os.environ['CONFIGPROXY_AUTH_TOKEN']\n"
        "r = u.Request(('https' if d else 'http') + '://proxy-api:8001/api/routes',"
        " headers={'Authorization': 'token ' + t})\n"
        "print(u.urlopen(r, timeout=10, context=c).read().decode())\n"
    )
    container = hub_container()
    if not container:
        raise DockerError("no running hub container")
    return json.loads(docker("exec", container, "python3", "-c", script).stdout)


# What a user's notebook can reach: run inside the server's container.
REACH = (
    "import json, socket, sys, urllib.request\n"
    "out = {}\n"
    "for name, (host, port, path) in json.loads(sys.argv[1]).items():\n"
    "    try:\n"
    "        socket.getaddrinfo(host, port)\n"
    "    except OSError as e:\n"
    "        out[name] = 'no such name'; continue\n"
    "    try:\n"
    "        s = socket.create_connection((host, port), timeout=5); s.close()\n"
    "    except OSError as e:\n"
    "        out[name] = 'refused: ' + type(e).__name__; continue\n"
    "    if path is None:\n"
    "        out[name] = 'connected'; continue\n"
    "    try:\n"
    "        r = urllib.request.urlopen(f'http://{host}:{port}{path}', timeout=10)\n"
    "        out[name] = f'HTTP {r.status}'\n"
    "    except urllib.error.HTTPError as e:\n"
    "        out[name] = f'HTTP {e.code}'\n"
    "    except OSError as e:\n"
    "        out[name] = 'refused: ' + type(e).__name__\n"
    "print(json.dumps(out))\n"
)


# From a user server: what must answer, and what must not (test_13, and
# tests/e2e_cluster/test_04 from a server on a worker)
WALL_PROBES = {
    "hub API": ("jupyterhub", 8001, "/hub/api/"),
    "hub API through hub-relay": ("hub-relay", 8001, "/hub/api/"),
    "public proxy port": ("proxy", 8000, "/hub/health"),
    "proxy API by the proxy's name": ("proxy", 8001, None),
    "proxy API by its internal name": ("proxy-api", 8001, None),
    "engine API (docker-api)": ("docker-api", 2375, None),
}


def assert_walled_off(seen):
    """What reach_from(service, WALL_PROBES) saw, as the stack must have it."""
    assert seen["hub API"] == "HTTP 200", seen
    assert seen["hub API through hub-relay"] == "HTTP 200", seen
    assert seen["public proxy port"] == "HTTP 200", seen
    assert seen["proxy API by the proxy's name"].startswith("refused"), seen
    assert seen["proxy API by its internal name"] == "no such name", seen
    assert seen["engine API (docker-api)"] == "no such name", seen


def reach_from(service, targets):
    """{name: what a process in `service`'s container got}: 'no such name',
    'refused: <error>', 'connected' or 'HTTP <status>', for targets
    {name: (host, port, path or None)}."""
    container = container_of(service)
    if not container:
        raise DockerError(f"no running container of {service}")
    return json.loads(docker("exec", container, "python3", "-c", REACH, json.dumps(targets)).stdout)

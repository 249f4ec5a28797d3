"""The hub reaches the engine only through the stack's docker-api service
(HAProxy with docker-api-proxy.cfg), which passes the calls the hub makes
and refuses the rest: a hub someone took over cannot start a container on a
node, exec into one, read the swarm's join tokens, or create a service that
mounts a node's files, adds capabilities or uses another stack's secret.

The refused calls are made from inside the hub's container with the hub's
own docker client (docker-py, DOCKER_HOST from the stack), as code running
in a compromised hub would. The same spec without the forbidden part is
created, to show that each refusal is the filter's and not the engine's.
"""

import json

from . import swarm
from .conftest import observe, phase
from .hubclient import start_and_wait

IMAGE = "jhswarm-standin/notebook:6.1.1"  # present on the node; never started
OTHER_SECRET = "jhswarm-e2e-not-the-hubs"

# Runs in the hub's container: argv[1] is {"image", "secret_id", "container"}.
ATTEMPTS = r'''
import json, sys
import docker
from docker.types import (ContainerSpec, DriverConfig, Mount, RestartPolicy, SecretReference,
                          ServiceMode, TaskTemplate)

arg = json.loads(sys.argv[1])
c = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
out = {}

def attempt(name, call):
    try:
        r = call()
    except docker.errors.APIError as e:
        out[name] = [e.status_code, str(e.explanation)]
        return
    out[name] = [200, "allowed"]
    if isinstance(r, dict) and r.get("ID") and name.startswith("service"):
        c.remove_service(r["ID"])

def service(name, **spec):
    sleep = ["sleep", "600"]
    return lambda: c.create_service(
        TaskTemplate(ContainerSpec(arg["image"], sleep, **spec)), name=f"jupyter-e2e-{name}")

attempt("engine info", c.info)
attempt("create a container", lambda: c.create_container(arg["image"], "true"))
attempt("list containers", c.containers)
attempt("exec in the docker-api container", lambda: c.exec_create(arg["container"], "id"))
attempt("read the swarm's join tokens", c.inspect_swarm)
attempt("remove a node", lambda: c.remove_node("self"))
attempt("update a stack service", lambda: c.update_service(arg["proxy"], 1, name="x"))
attempt("service: plain volume", service(
    "plain", mounts=[Mount("/home/jovyan/work", "jupyterhub-e2e-filter-plain")]))
attempt("service: bind mount of /", service(
    "bind", mounts=[Mount("/host", "/", type="bind")]))
attempt("service: volume of the node's disk", service(
    "disk", mounts=[Mount("/host", "jupyterhub-e2e-filter-disk", driver_config=DriverConfig(
        "local", {"type": "ext4", "device": "/dev/sda1"}))]))
attempt("service: volume binding a node path", service(
    "nodepath", mounts=[Mount("/host", "jupyterhub-e2e-filter-nodepath", driver_config=DriverConfig(
        "local", {"type": "none", "o": "bind", "device": "/"}))]))
attempt("service: added capability", service("cap", cap_add=["SYS_ADMIN"]))
# a global service, as the pre-puller makes, is checked as any service:
# one binding the node's / on every node is refused
attempt("service: global service binding /", lambda: c.create_service(
    TaskTemplate(ContainerSpec(arg["image"], ["true"], mounts=[Mount("/host", "/", type="bind")]),
                 restart_policy=RestartPolicy("none")),
    name="jupyter-e2e-global", mode=ServiceMode("global")))
attempt("service: another stack's secret", service(
    "secret", secrets=[SecretReference(arg["secret_id"], arg["secret_name"])]))
print(json.dumps(out))
'''

FILTERED = "Docker API filter"


def test_the_hub_uses_the_engine_through_the_filter_only(hub, make_user):
    with phase("docker-api: the hub has no socket, only DOCKER_HOST"):
        spec = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
        mounts = [m["Target"] for m in spec.get("Mounts", [])]
        assert "/var/run/docker.sock" not in mounts, mounts
        env = dict(e.split("=", 1) for e in spec["Env"])
        assert env.get("DOCKER_HOST") == "tcp://docker-api:2375", env.get("DOCKER_HOST")
        on_network = sorted(
            name for name in swarm.service_names(f"{swarm.STACK}_")
            if any(n["Target"] == swarm.network_id(swarm.DOCKER_NETWORK)
                   for n in swarm.service_inspect(name)["Spec"]["TaskTemplate"].get("Networks", [])))
        observe(f"docker-api: on {swarm.DOCKER_NETWORK}: {on_network}")
        assert on_network == sorted([swarm.HUB_SERVICE, swarm.DOCKER_API_SERVICE]), on_network

    with phase("docker-api: a spawn goes through it"):
        user = make_user("filtered")
        start_and_wait(user)
        calls = swarm.docker("service", "logs", "--raw", swarm.DOCKER_API_SERVICE).stdout
        created = [line for line in calls.splitlines() if "POST /v" in line and "/services/create" in line]
        observe(f"docker-api: service creations it passed: {len(created)}; last: {created[-1:]}")
        assert created and " 201 " in created[-1], calls[-2000:]
        user.stop_server("filtered")


def test_calls_the_hub_does_not_make_are_refused(hub):
    secret_id = swarm.docker("secret", "create", OTHER_SECRET, "-", input_text="not the hub's").stdout.strip()
    try:
        arg = {"image": IMAGE, "secret_id": secret_id, "secret_name": OTHER_SECRET,
               "container": swarm.container_of(swarm.DOCKER_API_SERVICE),
               "proxy": swarm.service_inspect(swarm.PROXY_SERVICE)["ID"]}
        before = set(swarm.docker("ps", "-aq").stdout.split())
        with phase("docker-api: attempts from inside the hub"):
            seen = json.loads(swarm.docker(
                "exec", swarm.hub_container(), "python3", "-c", ATTEMPTS, json.dumps(arg)).stdout)
        for name, (status, message) in seen.items():
            observe(f"docker-api: {name}: {status} {message[:90]}")
        assert seen.pop("engine info")[0] == 200
        assert seen.pop("service: plain volume")[0] == 200  # the filter is not refusing all
        for name, (status, message) in seen.items():
            assert status == 403 and FILTERED in message, (name, status, message)
        assert set(swarm.docker("ps", "-aq").stdout.split()) <= before, "a container was created"
        made = [s for s in swarm.user_services() if s.startswith("jupyter-e2e-")]
        assert made == [], made
    finally:
        swarm.docker("secret", "rm", OTHER_SECRET, check=False)
        for name in swarm.user_services():
            if name.startswith("jupyter-e2e-"):
                swarm.docker("service", "rm", name, check=False)
        swarm.docker("volume", "rm", "jupyterhub-e2e-filter-plain", check=False)

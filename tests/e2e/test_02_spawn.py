"""A user's server on swarm: it becomes ready, answers through the proxy, and
its service has the spec the SPAWNER_* variables ask for."""

from . import swarm
from .conftest import NOTEBOOK_IMAGE, PRODUCT_DEFAULT_NOTEBOOK, SETTINGS, SPAWN_CMD, phase
from .hubclient import start_and_wait

NAME = "sam"
SERVICE = "jupyter-sam"


def env_list(spec):
    return spec["TaskTemplate"]["ContainerSpec"].get("Env") or []


def test_spawn_service_spec(hub, make_user):
    with phase("spawn: signup/approve/login"):
        sam = make_user(NAME)

    with phase("spawn: start until ready"):
        model, _ = start_and_wait(sam)
        assert model["servers"][""]["ready"], model

    with phase("spawn: /user/sam/api/status through the proxy"):
        sam.open_server()
        status = sam.server_status()
        assert "started" in status, status

    with phase("spawn: service spec"):
        service = swarm.service_inspect(SERVICE)
        assert service, f"no service {SERVICE}: {swarm.user_services()}"
        spec = service["Spec"]
        task = spec["TaskTemplate"]
        container = task["ContainerSpec"]

        image = container["Image"].split("@")[0]
        assert image == (NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK), container["Image"]

        network = swarm.docker_json("network", "inspect", swarm.NETWORK)[0]
        assert network["Driver"] == "overlay"
        attached = [n["Target"] for n in task.get("Networks", [])]
        assert network["Id"] in attached or swarm.NETWORK in attached, (attached, network["Id"])

        mounts = container.get("Mounts") or []
        persistent = [m for m in mounts if m["Target"] == "/home/jovyan/work/persistence"]
        assert len(persistent) == 1, mounts
        assert persistent[0]["Type"] == "volume", persistent
        assert persistent[0]["Source"] == "jupyterhub-user-sam", persistent

        resources = task["Resources"]
        assert resources["Limits"]["NanoCPUs"] == 1_000_000_000, resources
        assert resources["Limits"]["MemoryBytes"] == 1024**3, resources
        assert resources["Reservations"]["NanoCPUs"] == 100_000_000, resources
        assert resources["Reservations"]["MemoryBytes"] == 64 * 1024**2, resources
        assert not resources["Reservations"].get("GenericResources"), resources

        env = env_list(spec)
        assert "E2E_A=1" in env, env
        assert "E2E_URL=http://x:1/y" in env, env  # value with colons kept whole
        assert [e for e in env if e.startswith("NVIDIA")] == ["NVIDIA_VISIBLE_DEVICES=void"], env

        assert spec["EndpointSpec"]["Mode"] == "dnsrr", spec["EndpointSpec"]
        args = container.get("Args") or []
        assert args[: len(SPAWN_CMD)] == SPAWN_CMD, args
        assert SETTINGS["SPAWNER_CONSTRAINTS"] in task["Placement"]["Constraints"], task["Placement"]

    with phase("spawn: running task is on the overlay network"):
        task = swarm.running_task(SERVICE)
        assert task, swarm.service_tasks(SERVICE)
        names = [a["Network"]["Spec"]["Name"] for a in task["NetworksAttachments"]]
        assert swarm.NETWORK in names, names

    with phase("spawn: stop"):
        sam.stop_server(NAME)
        swarm.wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")

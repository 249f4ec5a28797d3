"""NFS storage from the variables alone: docker-compose.nfs.yml mounts the
share's root into the hub at SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH, and without
it the hub refuses NFS spawns with a message that says what to do.

This machine's kernel has no NFS client, so no NFS mount ever succeeds here:
the opt-in file is checked at the spec level (the hub's service as swarm has
it, from `docker service inspect`) and by the failure an operator then sees
(`docker service ps --no-trunc`: the hub's task cannot mount the share); the
user's volume spec and swarm's failure to mount it are test_50's.
Each test deploys on its own (see test_50's docstring).
"""

import os
import time

import pytest

from . import swarm
from .conftest import PROJECT_IMAGE, SETTINGS, deploy, observe, phase
from .swarm import wait_for
from .test_08_missing_image import page_message
from .test_50_spawn_failures import MOUNT_REASONS, make_user

REFUSAL = "is not a mount point in the hub"

NFS = dict(
    SETTINGS,
    SPAWNER_PULL_POLICY="skip",
    SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3",
    SPAWNER_PERSISTENCE_NFS_HOST="127.0.0.1",
    SPAWNER_PERSISTENCE_NFS_DEVICE=":/nas/jupyterhub/{username}",  # the spec's example
)


@pytest.fixture
def clean(e2e_env):
    yield
    if os.environ.get("JHSWARM_E2E_KEEP") != "1":
        with phase("nfs stack: teardown"):
            swarm.cleanup()


def test_opt_in_file_mounts_the_share_root_into_the_hub(clean):
    with phase("nfs stack: deploy with docker-compose.nfs.yml"):
        deploy(extra_files=["docker-compose.nfs.yml"], wait=False,
               SPAWNER_PERSISTENCE_NFS_ROOT="/nas/jupyterhub", **NFS)
    spec = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
    mounts = {m["Target"]: m for m in spec["Mounts"]}
    observe(f"hub's mount at /jupyterhub_data: {mounts.get('/jupyterhub_data')}")
    mount = mounts["/jupyterhub_data"]
    assert (mount["Type"], mount["Source"]) == ("volume", swarm.SHARE_ROOT_VOLUME), mount
    assert mount["VolumeOptions"]["DriverConfig"] == {"Name": "local", "Options": {
        "type": "nfs", "o": "addr=127.0.0.1,rw,vers=3,nolock,soft", "device": ":/nas/jupyterhub"}}
    env = dict(e.split("=", 1) for e in spec["Env"])
    assert env["SPAWNER_PERSISTENCE_NFS_ROOT"] == "/nas/jupyterhub"

    # no NFS client here: the hub's task cannot start, and swarm says why
    def mount_failed():
        for task in swarm.service_tasks(swarm.HUB_SERVICE):
            err = task["Status"].get("Err") or ""
            if task["Status"]["State"] in ("failed", "rejected") and \
                    any(r in err for r in MOUNT_REASONS):
                return err
        return None

    with phase("nfs stack: the hub's task fails to mount the share"):
        err = wait_for(mount_failed, 120, "the hub's task failing on the NFS mount")
    ps = swarm.docker("service", "ps", "--no-trunc", swarm.HUB_SERVICE).stdout
    observe(f"docker service ps --no-trunc {swarm.HUB_SERVICE}:\n{ps}")
    assert ":/nas/jupyterhub" in err, err
    assert any(r in ps for r in MOUNT_REASONS), ps


def test_opt_in_file_requires_the_share_root(clean):
    """Without SPAWNER_PERSISTENCE_NFS_ROOT `docker stack deploy` stops with
    the file's message (compose cannot cut the root from the device)."""
    swarm.cleanup()
    env = dict(NFS, JUPYTERHUB_IMAGE=PROJECT_IMAGE, CONFIGPROXY_AUTH_TOKEN="x" * 64)
    with pytest.raises(swarm.DockerError) as e:
        swarm.stack_deploy(env, ["docker-compose.nfs.yml"])
    observe(f"docker stack deploy without SPAWNER_PERSISTENCE_NFS_ROOT: {e.value}")
    assert "SPAWNER_PERSISTENCE_NFS_ROOT" in str(e.value), e.value
    assert not swarm.service_names(f"{swarm.STACK}_")


def test_spawn_without_the_share_root_is_refused_at_once(clean):
    """The stack file alone, nfs3: nothing is mounted at MKDIRPATH, so the
    hub cannot create the user's directory; it refuses before any service
    exists, naming the variable, the path and the file to deploy with."""
    d = deploy(**NFS)
    d.admin = d.admin_client()
    hana = make_user(d, "hana")
    messages = []
    with phase("nfs stack: hana's spawn, browser"):
        # the spawn page: failed within its first second, so HTTP 500 with the
        # message, and the progress stream's last event says it too
        t0 = time.monotonic()
        r = hana.get("/hub/spawn/hana")
        events = hana.progress_events("hana", timeout=60)
        took = time.monotonic() - t0
        observe(f"hana, browser: GET /hub/spawn/hana -> HTTP {r.status_code} in {took:.1f}s: "
                f"{page_message(r.text)!r}; progress events: {events}")
        assert r.status_code == 500 and REFUSAL in page_message(r.text), r.text[:500]
        assert events[-1].get("failed") and REFUSAL in events[-1]["message"], events
        messages.append(events[-1]["message"])
    with phase("nfs stack: hana's spawn, API"):
        # refused before the POST returns: its answer is the message
        t0 = time.monotonic()
        r = hana.start_server("hana")
        took = max(took, time.monotonic() - t0)
        observe(f"hana, API: POST -> HTTP {r.status_code} in {time.monotonic() - t0:.1f}s: {r.text}")
        assert r.status_code == 500, r.text
        messages.append(r.json()["message"])
    for message in messages:
        assert "could not start" in message and REFUSAL in message, message
        assert "SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=/jupyterhub_data" in message, message
        assert "127.0.0.1:/nas/jupyterhub" in message and "docker-compose.nfs.yml" in message, message
    assert "jupyter-hana" not in swarm.user_services(), swarm.user_services()
    model = hana.user_model("hana")
    assert model["servers"] == {} and model["pending"] is None, model
    assert took < 60, took  # not swarm's failure, not the start timeout
    # no service was ever made for her
    assert "Created service jupyter-hana" not in swarm.hub_logs(5000)

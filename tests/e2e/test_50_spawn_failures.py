"""Spawns swarm cannot run end with swarm's reason, long before the start
timeout, on a deployment of their own:

    the shared settings, plus SPAWNER_PULL_POLICY=skip (the hub does not look
    for the image, swarm does), an nfs3 volume at 127.0.0.1:/nowhere (these
    machines have no NFS client: the mount fails with "no such device"), a
    plain local volume as the share's root in the hub
    (tests/e2e/share-root-standin.yml: without one the hub refuses NFS
    spawns itself, test_19) and SPAWNER_START_TIMEOUT=300 (a failure that came from the timeout would
    need 300 s and say so)

- frank: his volume cannot be mounted: swarm fails the task;
- erin-missing (the `missing` rule): an image that does not exist: swarm
  rejects the task with "No such image";
- gina, after `docker stack deploy` again with SPAWNER_PLATFORM=s390x:linux
  added (what an operator does to change a setting; only the hub restarts):
  no node has that platform.

Every spawn is tried twice: each attempt fails with the reason, the failed
service is gone (`docker service ls`) when the failure is reported, the hub's
user model shows no server and no pending spawn, so the user can try again.
Durations are printed (e2e observations).

deploy() replaces whatever runs: like every test without the `hub` fixture,
these run after the modules sharing the session's deployment (conftest's
pytest_collection_modifyitems).
"""

import os
import time

import pytest

from . import swarm
from .conftest import (
    MISSING_IMAGE, PASSWORD, SETTINGS, check_interpolation, deploy, observe, phase,
)
from .spawnwatch import start_and_watch
from .swarm import log, wait_for
from .test_08_missing_image import page_message

START_TIMEOUT = 300
FAILING = dict(
    SETTINGS,
    SPAWNER_PULL_POLICY="skip",
    SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3",
    SPAWNER_PERSISTENCE_NFS_HOST="127.0.0.1",
    SPAWNER_PERSISTENCE_NFS_DEVICE=":/nowhere",
    SPAWNER_START_TIMEOUT=str(START_TIMEOUT),
)
STANDIN_SHARE_ROOT = "tests/e2e/share-root-standin.yml"
# what swarm/dockerd say about a mount that cannot work
MOUNT_REASONS = ("no such device", "invalid mount config", "failed to mount local volume")


@pytest.fixture(scope="module")
def failing_hub(e2e_env):
    d = deploy(extra_files=[STANDIN_SHARE_ROOT], **FAILING)
    d.admin = d.admin_client()  # made at the first start, generated password
    yield d
    if os.environ.get("JHSWARM_E2E_KEEP") != "1":
        with phase("spawn failures: teardown"):
            swarm.cleanup()


def make_user(d, name):
    return d.approved_user(name, PASSWORD, d.admin)


def reconfigure(d, **changes):
    """`docker stack deploy` again with changed variables: swarm updates the
    hub service only; the data volume (users, cookies) stays."""
    env = {k: v for k, v in dict(d.env, **changes).items() if v is not None}
    old = swarm.hub_container()
    swarm.stack_deploy(env, [STANDIN_SHARE_ROOT])  # as deployed: the hub keeps its share root
    wait_for(lambda: (swarm.hub_container() or old) != old, 180, "the reconfigured hub running")
    check_interpolation(env)
    d.env = env
    d.wait_healthy()


def fails_twice(client, name, service, reasons, what):
    """Start `name`'s server twice, as a browser (GET /hub/spawn/<name>), then
    through the API; each attempt must fail with one of `reasons` and leave
    nothing behind. Returns (the last failure message, the API attempt's
    progress events)."""
    for attempt in ("browser", "API"):
        with phase(f"spawn failures: {name} ({what}), {attempt}"):
            if attempt == "browser":
                t0 = time.monotonic()
                r = client.get(f"/hub/spawn/{name}")
                answer = f"GET /hub/spawn/{name} -> HTTP {r.status_code} {r.url}"
                if r.status_code != 200:  # failed within the page's 1 s wait
                    answer += f": {page_message(r.text)!r}"
                events = client.progress_events(name, timeout=START_TIMEOUT + 30)
                took = time.monotonic() - t0
            else:
                r, events, took = start_and_watch(client, name, timeout=START_TIMEOUT + 30)
                answer = f"POST: HTTP {r.status_code} {r.text[:300]}"
            observe(f"{name} ({what}), {attempt}: failed after {took:.1f}s; {answer}; "
                    f"progress events: {events}")
            assert r.status_code in (200, 202, 500), (r.status_code, r.text[:300])
            assert events and events[-1].get("failed"), events
            message = events[-1]["message"]
            assert "could not start" in message, message
            assert any(reason in message for reason in reasons), message
            # removed before the failure was reported
            assert service not in swarm.user_services(), swarm.user_services()
            model = client.user_model(name)
            assert model["servers"] == {} and model["pending"] is None, model
    return message, events


def test_mount_swarm_cannot_make(failing_hub):
    frank = make_user(failing_hub, "frank")
    message, _ = fails_twice(frank, "frank", "jupyter-frank", MOUNT_REASONS, "nfs3 volume, no NFS client")
    assert "swarm failed the task" in message or "swarm rejected the task" in message, message


def test_image_that_does_not_exist(failing_hub):
    assert swarm.docker("image", "inspect", MISSING_IMAGE, check=False).returncode != 0, \
        f"{MISSING_IMAGE} exists on this node: remove it (docker image rm {MISSING_IMAGE})"
    erin = make_user(failing_hub, "erin-missing")
    message, _ = fails_twice(erin, "erin-missing", "jupyter-erin-2dmissing",
                          [f"No such image: {MISSING_IMAGE}"], "image does not exist, pull policy skip")
    assert "swarm rejected the task" in message, message
    # the hub did not look for the image (skip): it created the service and
    # swarm said no
    assert "Created service jupyter-erin-2dmissing" in swarm.hub_logs(5000)


def test_platform_no_node_has(failing_hub):
    with phase("spawn failures: stack deploy again with SPAWNER_PLATFORM=s390x:linux"):
        reconfigure(failing_hub, SPAWNER_PLATFORM="s390x:linux")
        log(f"hub reconfigured: SPAWNER_PLATFORM={failing_hub.env['SPAWNER_PLATFORM']}")
    gina = make_user(failing_hub, "gina")
    message, events = fails_twice(gina, "gina", "jupyter-gina", ["unsupported platform"],
                                  "SPAWNER_PLATFORM=s390x:linux")
    assert "s390x/linux" in message, message
    # pending for two seconds first: the stream showed swarm's words meanwhile
    waiting = [e["message"] for e in events if e["message"].startswith("waiting for a node")]
    assert any("unsupported platform" in m for m in waiting), events

"""A hub killed in the middle of a spawn leaves nothing behind.

`docker kill` (SIGKILL) of the hub's container as soon as the user's service
exists, while the spawn is still pending. Swarm starts a new hub; the user
then starts afresh: exactly one service. Besides, a service and a TLS secret
labelled as this hub's that its database does not know (as after a database
restored from a backup, or a user removed while the hub was down) are removed
at the new hub's start, which says so in its log. Services another hub
labelled, or nobody labelled, are never touched.
"""

import threading
import time

from . import swarm
from .conftest import NOTEBOOK_IMAGE, PRODUCT_DEFAULT_NOTEBOOK, observe, phase
from .hubclient import start_and_wait
from .swarm import log, wait_for

NAME = "crashmid"
SERVICE = "jupyter-crashmid"
GHOST = "jupyter-ghost"  # this hub's label, unknown to its database
GHOST_SECRET = "jupyter-ghost-0a0b0c-ssl-key"
FOREIGN = {  # service name: its hub label (None: no label)
    "jupyter-otherhub": "otherstack_jupyterhub",
    "jupyter-unlabelled": None,
}
LABEL = "jupyterhub-swarm.hub"


def create_foreign(name, hub_label):
    args = ["service", "create", "--detach", "--name", name, "--restart-condition", "none",
            "--constraint", "node.role==manager"]
    if hub_label:
        args += ["--label", f"{LABEL}={hub_label}"]
    swarm.docker(*args, "--entrypoint", "sleep", NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK,
                 "600", timeout=60)


def start_quietly(user):
    try:
        user.start_server(NAME)
    except Exception as e:  # the hub dies under this request
        log(f"the spawn request ended with {type(e).__name__}")


def test_hub_killed_mid_spawn_leaves_nothing_behind(hub, make_user):
    user = make_user(NAME)
    for name, label in {**FOREIGN, GHOST: swarm.HUB_SERVICE}.items():
        create_foreign(name, label)
    swarm.docker("secret", "create", "--label", f"{LABEL}={swarm.HUB_SERVICE}",
                 "--label", f"jupyterhub-swarm.server={GHOST}", GHOST_SECRET, "-",
                 input_text="not a key")
    try:
        with phase("hub killed mid-spawn: kill the hub once the user's service exists"):
            old_hub = swarm.hub_container()
            t0 = time.monotonic()
            threading.Thread(target=start_quietly, args=(user,), daemon=True).start()
            wait_for(lambda: swarm.service_inspect(SERVICE), 30, f"{SERVICE} created", interval=0.1)
            assert not user.user_model(NAME)["servers"].get("", {}).get("ready")
            swarm.docker("kill", old_hub)
            killed_after = time.monotonic() - t0
            labels = swarm.service_inspect(SERVICE)["Spec"].get("Labels", {})
            log(f"{SERVICE}'s labels: {labels}")
            log(f"hub killed {killed_after:.2f}s after the spawn request")

        with phase("hub killed mid-spawn: the new hub removes what it does not own"):
            wait_for(lambda: (c := swarm.hub_container()) and c != old_hub, 120, "a new hub")
            hub.wait_healthy(180)
            t1 = time.monotonic()
            wait_for(lambda: swarm.service_inspect(SERVICE) is None, 90,
                     f"{SERVICE} removed (the spawn the hub died in)", interval=1)
            gone_after = time.monotonic() - t1
            wait_for(lambda: swarm.service_inspect(GHOST) is None, 60,
                     f"the new hub to remove {GHOST}", interval=1)
            secrets = swarm.docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
            assert GHOST_SECRET not in secrets, secrets
            logs = swarm.hub_logs(400)
            assert "Removed what an earlier run of this hub left behind" in logs \
                and GHOST in logs and GHOST_SECRET in logs, logs[-3000:]
            for name in FOREIGN:
                assert swarm.service_inspect(name), f"{name} (not this hub's) was removed"
            assert labels.get(LABEL) == swarm.HUB_SERVICE, labels

        with phase("hub killed mid-spawn: the user starts afresh, one service"):
            start_and_wait(user)
            user.open_server()
            assert [s for s in swarm.user_services() if s.startswith(SERVICE)] == [SERVICE]
            user.stop_server(NAME)
        observe(f"hub SIGKILLed {killed_after:.1f}s into a spawn: the half-made service was gone "
                f"{gone_after:.1f}s after the new hub was healthy, the user started again; "
                "a labelled service and secret unknown to the database were removed, other "
                "hubs' services untouched")
    finally:
        swarm.docker("service", "rm", *FOREIGN, GHOST, check=False)
        swarm.docker("secret", "rm", GHOST_SECRET, check=False)

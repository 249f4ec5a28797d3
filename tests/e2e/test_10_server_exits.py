"""A user's server that dies or exits leaves no stranded user.

Swarm's default restart policy would start a new task at a new address
while the hub kept routing to the old one and called the server ready (on
a multi-node swarm, maybe on another node with another, empty local
volume). User services are created with restart condition "none": the
task stays ended, the hub's poll (every SPAWNER_POLL_INTERVAL, 30 s here)
sees it, stops the server, and a fresh start works with the saved files.
Covered: `docker kill` of the container, an OOM kill at SPAWNER_MEM_LIMIT,
and a clean exit (the server's own shutdown API, as JupyterLab's File >
Shut Down). The test waits up to
120 s for the hub to notice and prints how long it took."""

import time

from . import swarm
from .conftest import observe, phase
from .hubclient import start_and_wait
from .swarm import log, wait_for

NAME = "carl"
SERVICE = "jupyter-carl"
# run in the server's container as root: make the server the OOM killer's
# first choice, then take 3 GiB (over the 1G limit, swap included)
OOM = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if int(pid) != os.getpid() and b"singleuser" in cmd:
        open(f"/proc/{pid}/oom_score_adj", "w").write("1000")
chunks = [bytearray(256 * 1024 * 1024) for _ in range(12)]
"""


def container_of(service):
    task = swarm.running_task(service)
    return task and task["Status"]["ContainerStatus"]["ContainerID"]


def hub_sees_it_stopped(client, how):
    t0 = time.monotonic()

    def stopped():
        model = client.user_model(NAME)
        return not model["servers"] and not model.get("pending")

    wait_for(stopped, 120, f"the hub to see carl's server stopped after {how}", interval=1)
    took = time.monotonic() - t0
    observe(f"server ended by {how}: the hub knew {took:.0f}s later "
            "(SPAWNER_POLL_INTERVAL=30)")
    # swarm did not start another task of it behind the hub's back
    wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")


def test_a_dead_or_exited_server_ends_and_starts_afresh(hub, make_user):
    kept = f"kept {time.time()}\n"
    with phase("server exits: a running server with a saved file"):
        carl = make_user(NAME)
        start_and_wait(carl)
        carl.open_server()
        carl.put_file("persistence/kept.txt", kept)
        old = container_of(SERVICE)
        assert old

    with phase("server exits: docker kill"):
        swarm.docker("kill", old)
        hub_sees_it_stopped(carl, "docker kill")

    with phase("server exits: start again, the file is there"):
        start_and_wait(carl)
        carl.open_server()
        assert carl.get_file("persistence/kept.txt") == kept

    with phase("server exits: an OOM kill at SPAWNER_MEM_LIMIT (1G here)"):
        container = container_of(SERVICE)
        # the server is the process the kernel's OOM killer takes first (its
        # oom_score_adj raised to the most), then another process in the
        # container fills more memory than the limit
        proc = swarm.docker("exec", "-u", "0", container, "python3", "-c", OOM, check=False,
                            timeout=180)
        state = swarm.docker("inspect", "-f", "OOMKilled={{.State.OOMKilled}} exit={{.State.ExitCode}}",
                             container, check=False).stdout.strip()
        observe(f"server exits: the allocation ended with {proc.returncode}; the container: {state}")
        hub_sees_it_stopped(carl, "an OOM kill")

    with phase("server exits: start again after the OOM kill"):
        start_and_wait(carl)
        carl.open_server()
        assert carl.get_file("persistence/kept.txt") == kept

    with phase("server exits: clean exit (shutdown API)"):
        r = carl.server_api("POST", "shutdown")
        log(f"POST /user/{NAME}/api/shutdown: HTTP {r.status_code}")
        assert r.status_code in (200, 202, 204), r.text[:300]
        hub_sees_it_stopped(carl, "a clean exit")

    with phase("server exits: start again after the clean exit"):
        start_and_wait(carl)
        carl.open_server()
        assert carl.get_file("persistence/kept.txt") == kept
        carl.stop_server(NAME)

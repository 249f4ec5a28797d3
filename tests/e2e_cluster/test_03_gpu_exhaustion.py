"""GPUs run out: node3 has two fake GPUs, three users want one each.

gpa-gpu and gpb-gpu get one GPU each (different ones). gpc-gpu's task
stays pending: it never runs anywhere, in particular not on node3 without a
GPU nor on a node without GPUs. The spawn fails after SPAWNER_RESOURCE_WAIT
(15 s here) with swarm's "insufficient resources" reason and its service is
removed. What gpc-gpu sees (the POST's answer, the progress stream, the
user model) is recorded. Once gpa-gpu stops, gpc-gpu starts and gets the
GPU gpa-gpu had.
"""

import time

import pytest

from e2e import swarm
from e2e.swarm import wait_for

from .conftest import BASE, observe, phase, placement_settings, start_all

WAIT = int(BASE["SPAWNER_RESOURCE_WAIT"])


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    return cluster_hub.configure(placement_settings(cluster))


def test_third_gpu_user_waits_then_fails_with_reason(hub, cluster):
    gpa, gpb, gpc = (hub.user(n) for n in ("gpa-gpu", "gpb-gpu", "gpc-gpu"))

    with phase("cluster: gpa-gpu and gpb-gpu take both GPUs"):
        start_all({"gpa-gpu": gpa, "gpb-gpu": gpb})
        held = {n: cluster.gpus_of(f"jupyter-{n.replace('-', '-2d')}") for n in ("gpa-gpu", "gpb-gpu")}
        observe(f"cluster: GPUs held: {held}")
        assert sorted(held["gpa-gpu"] + held["gpb-gpu"]) == sorted(cluster.gpu_ids), held
        assert len(held["gpa-gpu"]) == len(held["gpb-gpu"]) == 1, held

    service = "jupyter-gpc-2dgpu"
    with phase("cluster: gpc-gpu: pending while no GPU is free"):
        t0 = time.monotonic()
        r = gpc.start_server("gpc-gpu")
        observe(f"cluster: gpc-gpu: POST /hub/api/users/gpc-gpu/server -> HTTP {r.status_code} {r.text[:200]}")
        assert r.status_code == 202, (r.status_code, r.text)
        task = wait_for(lambda: (swarm.service_tasks(service) or [None])[0], 20, f"a task of {service}")
        time.sleep(3)  # swarm has looked at every node by now
        tasks = swarm.service_tasks(service)
        states = [(t["Status"]["State"], t["Status"].get("Err", "")) for t in tasks]
        observe(f"cluster: gpc-gpu task after {time.monotonic() - t0:.0f}s: {states}")
        assert [s for s, _ in states] == ["pending"], states
        assert "insufficient resources" in states[0][1], states
        assert not task.get("NodeID"), task.get("NodeID")
        assert cluster.containers_of(service) == {}

    with phase("cluster: gpc-gpu: the spawn fails after SPAWNER_RESOURCE_WAIT"):
        events = gpc.progress_events("gpc-gpu", timeout=120)
        took = time.monotonic() - t0
        observe(f"cluster: gpc-gpu failed after {took:.1f}s (SPAWNER_RESOURCE_WAIT={WAIT}); "
                f"progress events: {events}")
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "could not start" in message and "insufficient resources" in message, message
        assert took >= WAIT, took  # it waited the grace for a GPU to free up
        model = gpc.user_model("gpc-gpu")
        observe(f"cluster: gpc-gpu user model after the failure: servers={model['servers']} "
                f"pending={model['pending']}")
        assert model["servers"] == {} and model["pending"] is None, model

    with phase("cluster: gpc-gpu: nothing left behind"):
        wait_for(lambda: service not in swarm.user_services(), 30, f"{service} removed")
        assert swarm.service_inspect(service) is None
        assert cluster.containers_of(service) == {}
        # the two running GPU servers were not disturbed
        assert cluster.gpus_of("jupyter-gpa-2dgpu") == held["gpa-gpu"]
        assert cluster.gpus_of("jupyter-gpb-2dgpu") == held["gpb-gpu"]

    with phase("cluster: gpa-gpu stops; gpc-gpu gets its GPU"):
        gpa.stop_server("gpa-gpu")
        start_all({"gpc-gpu": gpc})
        got = cluster.gpus_of(service)
        observe(f"cluster: gpc-gpu after gpa-gpu stopped: {got} on {cluster.node_of(service)}")
        assert got == held["gpa-gpu"], (got, held)

    with phase("cluster: stop gpb-gpu and gpc-gpu"):
        gpb.stop_server("gpb-gpu")
        gpc.stop_server("gpc-gpu")

"""A platform no node has: the spawn fails at once with swarm's reason.

Settings (re-deployed): SPAWNER_PLATFORM=<an architecture other than the
nodes'>:linux. Swarm reports "unsupported platform" for every node; the hub
fails the spawn within seconds (not after SPAWNER_RESOURCE_WAIT or the
start timeout), shows the reason, and removes the service.
"""

import threading
import time

import pytest

from e2e import swarm
from e2e.swarm import wait_for

from .conftest import observe, phase
from .nodes import spec_platforms


@pytest.fixture(scope="module")
def wrong(cluster):
    arch, os_name = cluster.platform()
    return ("arm64" if arch != "arm64" else "amd64"), os_name


@pytest.fixture(scope="module")
def hub(cluster_hub, wrong):
    return cluster_hub.configure({"SPAWNER_PLATFORM": "%s:%s" % wrong})


def test_wrong_platform_fails_fast(hub, cluster, wrong):
    name, service = "olga", "jupyter-olga"
    olga = hub.user(name)

    with phase("cluster: olga starts with a platform no node has"):
        t0 = time.monotonic()
        answer = {}
        post = threading.Thread(target=lambda: answer.update(r=olga.start_server(name)))
        post.start()
        found = wait_for(lambda: swarm.service_inspect(service), 20, f"{service} created", 0.1)
        platforms = spec_platforms(found["Spec"])
        assert platforms == [{"Architecture": wrong[0], "OS": wrong[1]}], platforms
        post.join(60)
        r = answer["r"]
        events = olga.progress_events(name, timeout=60)
        took = time.monotonic() - t0
        observe(f"cluster: SPAWNER_PLATFORM={wrong[0]}:{wrong[1]}: POST -> HTTP {r.status_code}; "
                f"failed after {took:.1f}s: {events[-1:]}")
        assert r.status_code in (202, 500), (r.status_code, r.text)
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "could not start" in message and "unsupported platform" in message, message

    with phase("cluster: olga: nothing left behind"):
        wait_for(lambda: service not in swarm.user_services(), 30, f"{service} removed")
        assert cluster.containers_of(service) == {}
        model = olga.user_model(name)
        assert model["servers"] == {} and model["pending"] is None, model

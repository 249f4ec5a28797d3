"""Global constraints and a suffix rule's constraints both apply; a bare
label key matches the node carrying that label; the preference and the
nodes' real platform are passed to swarm and accepted.

Settings: SPAWNER_CONSTRAINTS=node.role==worker,
SPAWNER_PREFERENCE=spread:node.labels.zone, SPAWNER_PLATFORM=<the nodes'
arch:os>, rules `mgr` (node.role==manager) and `cpu` (calculation_type==cpu).

- `dan-mgr`: the rule asks for the manager, the global setting for a worker.
  Both apply, so no node fits and the spawn fails at once with swarm's
  reason. Had the rule replaced the global constraints (or the other way
  round) the server would simply have run, on node1 (or on a worker).
- `eve-cpu`: `calculation_type==cpu` (no `node.labels.` prefix) lands on
  node2, the only node labelled calculation_type=cpu.
"""

import threading
import time

import pytest

from e2e import swarm
from e2e.swarm import wait_for

from .conftest import CPU_IMAGE, GLOBAL_CONSTRAINT, observe, phase, placement_settings, start_all
from .nodes import spec_constraints, spec_platforms, spec_preferences, spec_image

REASON = "constraints not satisfied"


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    return cluster_hub.configure(placement_settings(cluster))


def test_rule_and_global_constraints_both_apply(hub, cluster):
    dan = hub.user("dan-mgr")
    service = "jupyter-dan-2dmgr"

    with phase("cluster: dan-mgr: start; its service spec while it exists"):
        t0 = time.monotonic()
        answer = {}
        post = threading.Thread(target=lambda: answer.update(r=dan.start_server("dan-mgr")))
        post.start()
        found = wait_for(lambda: swarm.service_inspect(service), 20, f"{service} created", 0.1)
        constraints = spec_constraints(found["Spec"])
        post.join(60)
        observe(f"cluster: dan-mgr service constraints: {constraints}")
        assert constraints == sorted([GLOBAL_CONSTRAINT, "node.role==manager"]), constraints

    with phase("cluster: dan-mgr: the spawn fails with swarm's reason"):
        r = answer["r"]
        events = dan.progress_events("dan-mgr", timeout=60)
        took = time.monotonic() - t0
        observe(f"cluster: dan-mgr: POST {r.status_code} {r.text[:200]}; after {took:.1f}s "
                f"progress ends with {events[-1:]}")
        message = events[-1].get("message", "") if events else ""
        if r.status_code == 500:  # failed within the hub's slow_spawn_timeout
            message = message or r.json().get("message", "")
        assert REASON in message and "could not start" in message, (r.text, events)
        wait_for(lambda: service not in swarm.user_services(), 30, f"{service} removed")
        assert cluster.containers_of(service) == {}, "a container of dan-mgr ran somewhere"
        model = dan.user_model("dan-mgr")
        assert model["servers"] == {} and model["pending"] is None, model


def test_bare_label_platform_and_preference(hub, cluster):
    eve = hub.user("eve-cpu")
    service = "jupyter-eve-2dcpu"
    arch, os_name = cluster.platform()

    with phase("cluster: eve-cpu starts"):
        start_all({"eve-cpu": eve})

    with phase("cluster: eve-cpu: node2, spec"):
        node = cluster.node_of(service)
        observe(f"cluster: eve-cpu (calculation_type==cpu) runs on {node}")
        assert cluster.labels(node).get("calculation_type") == "cpu"
        assert node == cluster.cpu_node
        spec = cluster.spec_of(service)
        assert spec_image(spec) == CPU_IMAGE
        assert spec_constraints(spec) == sorted(
            [GLOBAL_CONSTRAINT, "node.labels.calculation_type==cpu"])
        assert spec_preferences(spec) == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
        assert spec_platforms(spec) == [{"Architecture": arch, "OS": os_name}]
        eve.open_server()
        assert "started" in eve.server_status()
        eve.stop_server("eve-cpu")

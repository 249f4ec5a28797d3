"""Suffix rules on a real swarm (SPAWNER_CONSTRAINT_IMAGES, ..._WITH_GPUS).

The node carries `calculation_type=gpu` but no GPU. So `alice-gpu` (rule
`gpu`: image :gpu, that label, 1 NVIDIA-GPU) cannot be placed: its service
spec is checked while it is pending, and the spawn must then fail with a
reason after SPAWNER_RESOURCE_WAIT (20s here), not hang. While alice-gpu is
pending, `bob` (no rule) and `carol-base` (rule `base`: image :base, the
label, no GPU) spawn concurrently; neither may inherit anything of the
other rules. While pending, alice-gpu's progress stream says it waits for a
free GPU; a second start goes pending again and can be cancelled without
leaving anything behind.
"""

import threading
import time

from . import swarm
from .conftest import (
    BASE_RULE_IMAGE,
    GPU_IMAGE,
    NOTEBOOK_IMAGE,
    PRODUCT_DEFAULT_NOTEBOOK,
    SETTINGS,
    observe,
    phase,
)
from .hubclient import start_and_wait
from .swarm import constraints_of, generic_resources, image_of, log, spec_of, wait_for

GLOBAL = SETTINGS["SPAWNER_CONSTRAINTS"]  # node.role==manager
LABEL = "node.labels.calculation_type==gpu"


def nvidia_env(spec):
    env = spec["TaskTemplate"]["ContainerSpec"].get("Env") or []
    return [e for e in env if e.startswith("NVIDIA")]


def test_suffix_rules_gpu_pending_and_no_leakage(hub, make_user):
    with phase("suffix: users"):
        alice = make_user("alice-gpu")
        bob = make_user("bob")
        carol = make_user("carol-base")

    # -- alice-gpu: spec while pending, then a failure with a reason ------------
    t0 = time.monotonic()
    r = alice.start_server("alice-gpu")
    assert r.status_code == 202, (r.status_code, r.text)  # pending, not started
    events = []
    reader = threading.Thread(
        target=lambda: events.extend(alice.progress_events("alice-gpu", timeout=150)),
        daemon=True,
    )
    reader.start()

    with phase("suffix: alice-gpu service spec while pending"):
        service = "jupyter-alice-2dgpu"
        spec = wait_for(lambda: swarm.service_inspect(service), 30, f"{service} created")["Spec"]
        assert image_of(spec) == GPU_IMAGE, spec["TaskTemplate"]["ContainerSpec"]
        assert constraints_of(spec) == sorted([GLOBAL, LABEL]), constraints_of(spec)
        assert generic_resources(spec) == [
            {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}
        ], generic_resources(spec)
        tasks = swarm.service_tasks(service)
        assert tasks and tasks[0]["Status"]["State"] == "pending", [
            t["Status"] for t in tasks
        ]
        log(f"alice-gpu task: {tasks[0]['Status']}")

    # -- bob and carol-base, concurrently, while alice-gpu is still pending --------
    with phase("suffix: bob + carol-base spawn concurrently"):
        results = {}

        def spawn(client, name):
            try:
                results[name] = start_and_wait(client, name)
            except BaseException as e:  # reported below
                results[name] = e

        threads = [
            threading.Thread(target=spawn, args=(bob, "bob")),
            threading.Thread(target=spawn, args=(carol, "carol-base")),
        ]
        assert alice.user_model("alice-gpu").get("pending") == "spawn", "alice-gpu should be pending"
        for t in threads:
            t.start()
        wait_for(
            lambda: {"jupyter-bob", "jupyter-carol-2dbase"} <= set(swarm.user_services()),
            60,
            "both services created",
        )
        log(f"bob and carol-base services exist; alice-gpu pending: "
            f"{alice.user_model('alice-gpu').get('pending')}")
        for t in threads:
            t.join(240)
        for name in ("bob", "carol-base"):
            assert not isinstance(results.get(name), BaseException), f"{name}: {results.get(name)!r}"
            assert name in results, f"{name}: spawn thread did not finish"

    with phase("suffix: bob and carol-base specs: no leakage"):
        bob_spec = spec_of("jupyter-bob")
        assert image_of(bob_spec) == (NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK)
        assert constraints_of(bob_spec) == [GLOBAL]
        assert generic_resources(bob_spec) == []
        assert nvidia_env(bob_spec) == ["NVIDIA_VISIBLE_DEVICES=void"]  # no GPU: none visible

        carol_spec = spec_of("jupyter-carol-2dbase")
        assert image_of(carol_spec) == BASE_RULE_IMAGE
        assert constraints_of(carol_spec) == sorted([GLOBAL, LABEL])
        assert generic_resources(carol_spec) == []
        assert nvidia_env(carol_spec) == ["NVIDIA_VISIBLE_DEVICES=void"]

        for client, name in ((bob, "bob"), (carol, "carol-base")):
            client.open_server(name)
            assert "started" in client.server_status(name)

    with phase("suffix: alice-gpu spawn fails with a reason"):
        reader.join(150)
        took = time.monotonic() - t0
        assert not reader.is_alive(), "progress stream still open after 150s"
        observe(f"alice-gpu (needs a GPU, none exists): failed after {took:.0f}s; progress events: {events}")
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "could not start" in message and "insufficient resources" in message, message
        assert "for a node with 1 GPU" in message, message  # what was asked for
        waiting = [e["message"] for e in events if "waiting for a free GPU" in e["message"]]
        assert waiting and "insufficient resources" in waiting[0], events
        model = alice.user_model("alice-gpu")
        observe(f"alice-gpu user model after the failure: servers={model['servers']} pending={model['pending']}")
        assert model["servers"] == {} and model["pending"] is None, model
        assert service not in swarm.user_services()  # removed before the failure was reported

    with phase("suffix: alice-gpu starts again, then cancels the pending spawn"):
        # as a browser: the spawn page answers after 1 s (the API's POST
        # would hold the answer for its 10 s slow_spawn_timeout)
        r = alice.get("/hub/spawn/alice-gpu")
        assert r.url.endswith("/hub/spawn-pending/alice-gpu"), (r.status_code, r.url)

        def waiting_for_gpu():
            tasks = swarm.service_tasks(service)
            return tasks and "insufficient resources" in (tasks[0]["Status"].get("Err") or "")

        wait_for(waiting_for_gpu, 30, f"{service} pending for a GPU again")
        t1 = time.monotonic()
        model = alice.stop_server("alice-gpu")  # DELETE while the spawn is pending
        observe(f"alice-gpu: pending spawn cancelled in {time.monotonic() - t1:.1f}s: "
                f"servers={model['servers']} pending={model['pending']}")
        assert model["servers"] == {} and model["pending"] is None, model
        wait_for(lambda: service not in swarm.user_services(), 30, f"{service} removed after the cancel")

    with phase("suffix: stop bob and carol-base"):
        bob.stop_server("bob")
        carol.stop_server("carol-base")
        wait_for(
            lambda: not {"jupyter-bob", "jupyter-carol-2dbase"} & set(swarm.user_services()),
            30,
            "bob's and carol-base's services removed",
        )

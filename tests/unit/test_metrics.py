"""The hub's own Prometheus series (docs/administration.md, "Metrics"): spawn failures by
reason kind, the wait for a node, the per-node series, and the metrics
token's service. The e2e test (tests/e2e/test_21_metrics.py) scrapes them
with a real Prometheus."""

import asyncio

import pytest
from conftest import config_error, load_config
from prometheus_client import REGISTRY
from docker.errors import NotFound
from spawner_harness import _Response, make_spawner
from test_cluster_page import NODES, NOW, SERVICES, task
from test_operator import make_authenticator

import jupyterhub_swarm
from jupyterhub_swarm import (
    FAILURE_KINDS, SpawnFailed, SwarmMetricsHandler, cluster_rows,
    ended_kind, node_samples, set_node_metrics, unplaceable_kind,
)

# what swarm and dockerd said in the e2e runs (test_50, test_06, test_08)
MOUNT_ERRS = [
    'failed to mount local volume: mount :/nowhere:/var/lib/docker/volumes/x/_data, '
    'data: addr=127.0.0.1,nolock,soft: no such device',
    'invalid mount config for type "volume": invalid mount path',
]
IMAGE_ERRS = ["No such image: jhswarm-missing/image:none",
              "pull access denied for x/y, repository does not exist or may require 'docker login'"]


@pytest.mark.parametrize("err", MOUNT_ERRS)
def test_mount_errors_are_mount(err):
    assert ended_kind(err) == "mount"


@pytest.mark.parametrize("err", IMAGE_ERRS)
def test_image_errors_are_image(err):
    assert ended_kind(err) == "image"


def test_a_server_that_exits_is_exited():
    assert ended_kind("task: non-zero exit (1)") == "exited"


def test_platform_only_when_the_platform_is_the_only_reason():
    assert unplaceable_kind("no suitable node (unsupported platform on 1 node)") == "platform"
    assert unplaceable_kind(
        "no suitable node (scheduling constraints not satisfied on 1 node)") == "unplaceable"
    assert unplaceable_kind("no suitable node (scheduling constraints not satisfied on 1 node; "
                            "unsupported platform on 1 node)") == "unplaceable"


def test_an_unknown_kind_is_other():
    assert SpawnFailed("x", "nonsense").kind == "other"
    assert SpawnFailed("x").kind == "other"


def failures(kind):
    return REGISTRY.get_sample_value("jupyterhub_swarm_spawn_failures_total", {"reason": kind})


def node_waits():
    return REGISTRY.get_sample_value("jupyterhub_swarm_node_wait_seconds_count") or 0


def test_every_kind_is_exported_from_zero():
    for kind in FAILURE_KINDS:
        assert failures(kind) is not None, kind


class TaskDocker:
    """The docker calls of one spawn, the tasks given by the test."""

    def __init__(self, tasks):
        self.tasks = tasks
        self.created = False
        self.removed = []

    async def __call__(self, method, *args, **kwargs):
        if method == "inspect_service" and not self.created:
            raise NotFound("no such service", response=_Response(404))
        if method in ("inspect_service", "inspect_image"):
            return {"ID": "svc1", "Id": "img"}
        if method == "create_service":
            self.created = True
            return {"ID": "svc1"}
        if method == "tasks":
            return self.tasks
        if method == "remove_service":
            self.removed.append(args)
            return None
        raise AssertionError(f"unexpected docker call {method}")


def start_with_tasks(monkeypatch, tasks):
    monkeypatch.setattr(jupyterhub_swarm, "HOPELESS_AFTER", -1)  # no wait in a unit test
    spawner = make_spawner(load_config(), "ann")
    spawner.docker = fake = TaskDocker(tasks)
    with pytest.raises(SpawnFailed) as info:
        asyncio.run(spawner.start())
    assert fake.removed, "the failed service was not removed"
    return info.value


def test_an_unplaceable_spawn_counts_once_under_its_kind(monkeypatch):
    before = {k: failures(k) for k in FAILURE_KINDS}
    waits = node_waits()
    err = start_with_tasks(monkeypatch, [{"CreatedAt": "1", "Status": {
        "State": "pending",
        "Err": "no suitable node (scheduling constraints not satisfied on 1 node)"}}])
    assert err.kind == "unplaceable"
    after = {k: failures(k) for k in FAILURE_KINDS}
    assert {k: after[k] - before[k] for k in FAILURE_KINDS if after[k] != before[k]} == \
        {"unplaceable": 1}
    assert node_waits() == waits, "a task that never had a node observed a node wait"


def test_a_mount_failure_counts_as_mount_and_observes_the_node_wait(monkeypatch):
    before, waits = failures("mount"), node_waits()
    err = start_with_tasks(monkeypatch, [{"CreatedAt": "1", "NodeID": "n1", "Status": {
        "State": "rejected", "Err": MOUNT_ERRS[0]}}])
    assert err.kind == "mount"
    assert failures("mount") == before + 1
    assert node_waits() == waits + 1


def test_a_cancelled_start_before_the_timeout_is_not_a_failure(monkeypatch):
    spawner = make_spawner(load_config(), "ann")
    spawner.docker = TaskDocker([{"CreatedAt": "1", "Status": {"State": "pending"}}])
    before = {k: failures(k) for k in FAILURE_KINDS}

    async def cancel_soon():
        t = asyncio.ensure_future(spawner.start())
        await asyncio.sleep(0.5)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(cancel_soon())
    assert {k: failures(k) for k in FAILURE_KINDS} == before


def test_a_start_cancelled_at_the_timeout_is_a_timeout(monkeypatch):
    spawner = make_spawner(load_config(SPAWNER_START_TIMEOUT="1"), "ann")
    spawner.docker = TaskDocker([{"CreatedAt": "1", "Status": {"State": "pending"}}])
    before = failures("timeout")

    async def as_the_hub_does():  # JupyterHub's User.spawn: wait_for(start, start_timeout)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(spawner.start(), timeout=spawner.start_timeout)

    asyncio.run(as_the_hub_does())
    assert failures("timeout") == before + 1


def test_node_samples_name_nodes_by_hostname():
    tasks = [task("s1", "n2", gpus=1), task("s4", "n2"), task("s2", "n1"),
             task("s4", "", state="pending")]
    nodes, waiting = cluster_rows(NODES, SERVICES, tasks, {"jupyter-ann": ("ann", "")}, NOW)
    gpus, servers, waiting_count = node_samples(nodes, waiting)
    assert gpus == {("gpu-box", "NVIDIA-GPU", "advertised"): 2,
                    ("gpu-box", "NVIDIA-GPU", "reserved"): 1}
    assert servers == {"gpu-box": 2, "arm-pi": 1}
    assert waiting_count == 1


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def test_set_node_metrics_replaces_every_node_series():
    set_node_metrics(({("a", "NVIDIA-GPU", "advertised"): 4}, {"a": 1, "b": 0}, 2))
    assert sample("jupyterhub_swarm_node_gpus", node="a", kind="NVIDIA-GPU",
                  state="advertised") == 4
    assert sample("jupyterhub_swarm_node_user_servers", node="b") == 0
    assert sample("jupyterhub_swarm_user_servers_waiting") == 2
    assert sample("jupyterhub_swarm_cluster_up") == 1
    set_node_metrics(({}, {"c": 3}, 0))  # node a left the swarm: its series go
    assert sample("jupyterhub_swarm_node_user_servers", node="a") is None
    assert sample("jupyterhub_swarm_node_gpus", node="a", kind="NVIDIA-GPU",
                  state="advertised") is None
    assert sample("jupyterhub_swarm_node_user_servers", node="c") == 3
    set_node_metrics(None)  # the engine is away
    assert sample("jupyterhub_swarm_node_user_servers", node="c") is None
    assert sample("jupyterhub_swarm_cluster_up") == 0


def test_the_hub_serves_metrics_with_the_node_series():
    # the authenticator's handlers come before JupyterHub's own (init_handlers):
    # these paths are then served by SwarmMetricsHandler (the e2e test sees
    # the node series arrive)
    handlers = dict(make_authenticator(load_config())[2]().get_handlers(None))
    assert handlers[r"/metrics$"] is SwarmMetricsHandler
    assert handlers[r"/api/metrics$"] is SwarmMetricsHandler


# -- the scraper's token: a service with read:metrics only ------------------------

TOKEN = "0123456789abcdef0123456789abcdef"


def test_a_metrics_token_makes_a_read_metrics_service():
    cfg = load_config(HUB_METRICS_TOKEN=TOKEN)
    assert cfg.JupyterHub.services == [{"name": "prometheus", "api_token": TOKEN}]
    assert cfg.JupyterHub.load_roles == [
        {"name": "metrics", "scopes": ["read:metrics"], "services": ["prometheus"]}]


def test_no_token_no_service():
    cfg = load_config()
    assert "services" not in cfg.JupyterHub and "load_roles" not in cfg.JupyterHub


def test_the_token_and_the_culler_both_get_their_service(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    cfg = load_config(HUB_METRICS_TOKEN_FILE=str(path), HUB_CULL_IDLE_TIMEOUT="3600")
    assert [s["name"] for s in cfg.JupyterHub.services] == ["idle-culler", "prometheus"]
    assert cfg.JupyterHub.services[1]["api_token"] == TOKEN
    assert [r["name"] for r in cfg.JupyterHub.load_roles] == ["idle-culler", "metrics"]


@pytest.mark.parametrize("token", ["short", "0123456789 abcdef0123456789"])
def test_a_weak_token_is_refused_without_showing_it(token):
    message = config_error(HUB_METRICS_TOKEN=token)
    assert "HUB_METRICS_TOKEN" in message and token not in message, message


@pytest.mark.parametrize("name, heading", [("administration", "### Metrics"), ("zh-CN/administration", "### 指标")])
def test_every_failure_kind_is_explained_in_the_metrics_docs(name, heading):
    import docpages

    text = docpages.section(name, heading)
    missing = [kind for kind in FAILURE_KINDS if f"`{kind}`" not in text]
    assert not missing, f"docs/{name}.md {heading!r} does not explain the failure kinds {missing}"

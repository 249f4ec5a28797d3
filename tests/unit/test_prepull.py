"""The pre-puller (SPAWNER_PREPULL): which images, on which nodes, with
which constraints, and when it acts, decided from docker's node and task
lists without an engine; the loop itself against a fake engine. The real
jobs on the real swarm: tests/e2e/test_27_prepull.py."""

import asyncio
import json
import re

import pytest

from conftest import ROOT, config_error, load_config
from docker.errors import NotFound
from jupyterhub_swarm import (
    HUB_LABEL, PREPULL_LABEL, PREPULL_PREFIX, JobOutcome, Prepuller, PullTarget, find_leftovers,
    images_wanted, job_constraints, job_outcome, node_matches, outcome_words, platform_matches,
    prepull_job_name, prepull_spec, prepuller_from_config, pull_targets, service_name,
    stale_jobs, to_pull,
)


class Log:
    def __init__(self):
        self.lines = []

    def _add(self, level, msg, *args):
        self.lines.append((level, msg % args if args else msg))

    def info(self, msg, *args):
        self._add("info", msg, *args)

    def warning(self, msg, *args):
        self._add("warning", msg, *args)

    def text(self):
        return "\n".join(line for _, line in self.lines)


def node(ident, hostname=None, role="worker", labels=None, gpus=0, arch="x86_64", state="ready",
         availability="active", addr="10.0.0.1", engine_labels=None):
    resources = {"NanoCPUs": 2 * 10**9, "MemoryBytes": 2**32}
    if gpus:
        resources["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpus}}]
    return {"ID": ident,
            "Spec": {"Role": role, "Availability": availability, "Labels": labels or {}},
            "Description": {"Hostname": hostname or ident, "Resources": resources,
                            "Platform": {"Architecture": arch, "OS": "linux"},
                            "Engine": {"Labels": engine_labels or {}}},
            "Status": {"State": state, "Addr": addr}}


MANAGER = node("n1", "manager1", role="manager", addr="10.0.0.1")
CPU = node("n2", "cpu1", labels={"calculation_type": "cpu"}, addr="10.0.0.2")
GPU = node("n3", "gpu1", labels={"calculation_type": "gpu"}, gpus=2, addr="10.0.1.3")
NODES = [MANAGER, CPU, GPU]

GPU_RULES = dict(
    SPAWNER_NOTEBOOK_IMAGE="nb:1",
    SPAWNER_CONSTRAINT_IMAGES="gpu:calculation_type==gpu->nb:cuda;base->nb:1;"
                              "cpu:calculation_type==cpu->nb:cpu",
    SPAWNER_CONSTRAINT_WITH_GPUS="gpu->1",
    SPAWNER_PROFILES="pgpu->nb:cuda;pcpu:calculation_type==cpu->nb:cpu",
    SPAWNER_PROFILE_GPUS="pgpu->2")


def targets_of(**env):
    sp = load_config(**env).SwarmUserSpawner
    return pull_targets(sp.image, sp.base_constraints, sp.default_gpu, sp.suffix_rules,
                        sp.profiles)


# -- the variable ---------------------------------------------------------------

def test_on_by_default_and_switchable():
    assert load_config().SwarmUserSpawner.prepull is True
    assert load_config(SPAWNER_PREPULL="off").SwarmUserSpawner.prepull is False
    assert load_config(SPAWNER_PREPULL="Yes").SwarmUserSpawner.prepull is True


def test_a_bad_value_names_the_variable_the_value_and_the_forms():
    message = config_error(SPAWNER_PREPULL="sometimes")
    assert "SPAWNER_PREPULL='sometimes'" in message
    assert "true/false, 1/0, yes/no or on/off" in message


@pytest.mark.parametrize("env, on", [
    ({}, True),
    ({"SPAWNER_PULL_POLICY": "always"}, True),
    ({"SPAWNER_PREPULL": "false"}, False),
    ({"SPAWNER_PULL_POLICY": "never"}, False),
    ({"SPAWNER_PULL_POLICY": "skip"}, False),
])
def test_off_when_asked_and_with_a_policy_that_does_not_pull(env, on):
    log = Log()
    prepuller = prepuller_from_config(load_config(**env), log)
    assert (prepuller is not None) == on
    if not on:
        assert "Pre-pull is off" in log.text()
        assert any(word in log.text() for word in ("SPAWNER_PREPULL=false", "never", "skip"))


# -- which images, with which placement ----------------------------------------------

def test_the_default_every_rules_and_every_profiles_image_once_each():
    targets = targets_of(SPAWNER_CONSTRAINTS="node.role==worker", **GPU_RULES)
    assert targets == (
        PullTarget("nb:1", ("node.role==worker",), 0),
        PullTarget("nb:cuda", ("node.role==worker", "node.labels.calculation_type==gpu"), 1),
        PullTarget("nb:cpu", ("node.role==worker", "node.labels.calculation_type==cpu"), 0),
        # the profile pgpu: the same image without the rule's constraint, 2 GPUs
        PullTarget("nb:cuda", ("node.role==worker",), 2),
    )


def test_spawner_use_gpus_counts_for_the_default_image_and_visible_gpus_do_not():
    assert targets_of(SPAWNER_USE_GPUS="1") == (PullTarget("jupyter/base-notebook:notebook-6.5.4",
                                                           (), 1),)
    assert targets_of(SPAWNER_USE_GPUS="all")[0].gpus == 0  # nothing reserved: any node


def test_a_gpu_image_only_on_the_nodes_with_that_many_gpus():
    wanted = images_wanted(targets_of(**GPU_RULES), NODES, ())
    assert wanted == {"nb:1": {"n1", "n2", "n3"}, "nb:cuda": {"n3"}, "nb:cpu": {"n2"}}
    one_gpu = node("n4", "gpu2", labels={"calculation_type": "gpu"}, gpus=1)
    # the rule wants 1 (gpu1 and gpu2), the profile 2 anywhere (gpu1 only)
    assert images_wanted(targets_of(**GPU_RULES), NODES + [one_gpu], ())["nb:cuda"] == {
        "n3", "n4"}
    assert images_wanted((PullTarget("nb:cuda", (), 2),), NODES + [one_gpu], ()) == {
        "nb:cuda": {"n3"}}


def test_only_ready_active_nodes_and_an_image_no_node_may_run_is_left_out():
    down = node("n5", state="down")
    drained = node("n6", availability="drain")
    targets = (PullTarget("nb:1"), PullTarget("nb:x", ("node.labels.zone==nowhere",)))
    assert images_wanted(targets, [MANAGER, down, drained], ()) == {"nb:1": {"n1"}}


def test_platforms_as_swarm_compares_them():
    arm = node("n7", arch="aarch64")
    assert platform_matches(arm, (("arm64", "linux"),))
    assert platform_matches(MANAGER, (("amd64", "linux"), ("arm64", "linux")))
    assert not platform_matches(arm, (("amd64", "linux"),))
    assert platform_matches(arm, ())
    assert images_wanted((PullTarget("nb:1"),), [MANAGER, arm], (("arm64", "linux"),)) == {
        "nb:1": {"n7"}}


@pytest.mark.parametrize("constraint, matched", [
    ("node.role==manager", {"n1"}),
    ("node.role!=manager", {"n2", "n3"}),
    ("node.hostname==CPU1", {"n2"}),  # values ignore case
    ("node.id==n3", {"n3"}),
    ("node.labels.calculation_type==gpu", {"n3"}),
    ("node.labels.calculation_type!=gpu", {"n1", "n2"}),  # no label: "" != gpu
    ("node.labels.Calculation_type==gpu", set()),  # label names as written
    ("node.ip==10.0.0.0/24", {"n1", "n2"}),
    ("node.ip!=10.0.1.3", {"n1", "n2"}),
    ("node.platform.arch==x86_64", {"n1", "n2", "n3"}),
    ("node.platform.os==windows", set()),
    ("engine.labels.disk==ssd", {"n1"}),
    ("node.unknown==x", set()),  # swarm: no node
])
def test_constraints_as_swarm_matches_them(constraint, matched):
    nodes = [dict(MANAGER, Description=dict(MANAGER["Description"],
                                            Engine={"Labels": {"disk": "ssd"}})), CPU, GPU]
    assert {n["ID"] for n in nodes if node_matches(n, (constraint,))} == matched


def test_a_jobs_constraints_are_the_rules_and_exclude_what_lacks_the_gpus():
    targets = targets_of(**dict(GPU_RULES, SPAWNER_PROFILES="", SPAWNER_PROFILE_GPUS=""))
    labelled_gpu_less = node("n8", labels={"calculation_type": "gpu"})
    nodes = NODES + [labelled_gpu_less]
    assert job_constraints("nb:cuda", targets, nodes, ()) == [
        "node.labels.calculation_type==gpu", "node.id!=n8"]
    assert job_constraints("nb:cpu", targets, nodes, ()) == ["node.labels.calculation_type==cpu"]
    assert job_constraints("nb:1", targets, nodes, ()) == []


def test_an_image_of_several_rules_goes_to_the_union_of_their_nodes():
    targets = (PullTarget("nb:1", ("node.labels.calculation_type==cpu",)),
               PullTarget("nb:1", ("node.role==manager",)))
    assert images_wanted(targets, NODES, ()) == {"nb:1": {"n1", "n2"}}
    assert job_constraints("nb:1", targets, NODES, ()) == ["node.id!=n3"]


# -- the job ---------------------------------------------------------------------

def test_the_job_is_a_labelled_global_service_running_true_once_with_tiny_limits():
    spec = prepull_spec("nb:cuda", ["node.labels.calculation_type==gpu", "node.id!=n8"],
                        (("amd64", "linux"),), "jhub_jupyterhub")
    assert spec["mode"] == {"global": {}}  # docker-py spells it so; not a job: moby/moby#44312
    assert spec["labels"] == {PREPULL_LABEL: "nb:cuda", HUB_LABEL: "jhub_jupyterhub"}
    assert spec["name"] == prepull_job_name("jhub_jupyterhub", "nb:cuda")
    template = spec["task_template"]
    container = template["ContainerSpec"]
    assert container["Image"] == "nb:cuda" and container["Command"] == ["true"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in container["Env"]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Resources"] == {"Limits": {"NanoCPUs": 10**7, "MemoryBytes": 6 * 2**20}}
    assert "Reservations" not in template["Resources"]  # nothing reserved: never waits for GPUs
    assert template["Placement"]["Constraints"] == ["node.labels.calculation_type==gpu",
                                                    "node.id!=n8"]
    assert template["Placement"]["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]
    assert HUB_LABEL not in prepull_spec("nb:1", [], (), "")["labels"]


def filter_refusals(body):
    """The docker-api filter's checks of a service spec (docker-api-proxy.cfg's
    req.body regular expressions, -i) that `body` hits."""
    cfg = (ROOT / "docker-api-proxy.cfg").read_text()
    found = re.findall(r"acl (bad_\w+|escaped)\s+req\.body -m (reg|sub)( -i)? '([^']*)'", cfg)
    assert len(found) >= 6, found
    hits = []
    for name, kind, _, pattern in found:
        if kind == "sub" and pattern in body or kind == "reg" and re.search(pattern, body, re.I):
            hits.append(name)
    return hits


def test_the_docker_api_filter_lets_the_job_through():
    spec = prepull_spec("reg:5000/nb:cuda", ["node.labels.calculation_type==gpu"],
                        (("amd64", "linux"),), "jhub_jupyterhub")
    body = json.dumps({"Name": spec["name"], "Labels": spec["labels"],
                       "TaskTemplate": spec["task_template"], "Mode": spec["mode"]})
    assert filter_refusals(body) == []
    assert len(body) < 60000
    # and the same checks hold for jobs: a bind mount in one is refused
    bad = body.replace('"Image"', '"Mounts": [{"Type": "bind", "Source": "/"}], "Image"')
    assert "bad_mount" in filter_refusals(bad)


def test_a_jobs_name_is_never_a_user_servers_and_is_the_hubs_own():
    name = prepull_job_name("jhub_jupyterhub", "nb:1")
    assert name.startswith(PREPULL_PREFIX) and name.startswith("jupyter-") and len(name) < 63
    # a user's service name holds "--" only when shortened to 63 characters
    for user in ("prepull", "prepull-", "prepull--x", "a" * 80, "prepull-" + name[17:]):
        escaped = user.replace("-", "-2d")
        assert service_name("jupyter", escaped) != name
        assert "--" not in service_name("jupyter", escaped) or len(
            service_name("jupyter", escaped)) == 63
    assert prepull_job_name("other_jupyterhub", "nb:1") != name


# -- when to act -----------------------------------------------------------------

WANTED = {"nb:1": frozenset({"n1", "n2"}), "nb:cuda": frozenset({"n3"})}


def test_at_start_every_image_gets_a_job():
    assert to_pull(WANTED, {}, {}, now=0, retry=600) == WANTED


def test_nothing_to_do_once_every_node_has_every_image():
    done = {"nb:1": {"n1": (True, 0), "n2": (True, 0)}, "nb:cuda": {"n3": (True, 0)}}
    assert to_pull(WANTED, done, {}, now=10, retry=600) == {}


def test_a_node_that_joins_gets_the_images_it_may_run():
    done = {"nb:1": {"n1": (True, 0), "n2": (True, 0)}, "nb:cuda": {"n3": (True, 0)}}
    joined = dict(WANTED, **{"nb:1": frozenset({"n1", "n2", "n9"})})
    assert to_pull(joined, done, {}, now=10, retry=600) == {"nb:1": {"n1", "n2", "n9"}}


def test_no_second_job_while_one_runs():
    assert to_pull(WANTED, {}, {"nb:1": object()}, now=0, retry=600) == {
        "nb:cuda": WANTED["nb:cuda"]}


def test_a_failed_node_is_tried_again_only_after_retry_seconds():
    done = {"nb:1": {"n1": (True, 0), "n2": (False, 100)}, "nb:cuda": {"n3": (True, 0)}}
    assert to_pull(WANTED, done, {}, now=100 + 599, retry=600) == {}
    assert to_pull(WANTED, done, {}, now=100 + 600, retry=600) == {"nb:1": WANTED["nb:1"]}


def task(node_id, state, err="", created="2026-01-01T00:00:01Z", container=True):
    status = {"State": state}
    if err:
        status["Err"] = err
    if container:
        status["ContainerStatus"] = {"ContainerID": "c" + node_id}
    return {"NodeID": node_id, "CreatedAt": created, "Status": status}


def test_a_job_is_done_when_each_of_its_nodes_has_an_ended_task():
    expected = frozenset({"n1", "n2"})
    assert job_outcome([], expected) is None
    assert job_outcome([task("n1", "complete")], expected) is None  # n2 has none yet
    assert job_outcome([task("n1", "complete"), task("n2", "preparing")], expected) is None
    outcome = job_outcome([task("n1", "complete"),
                           task("n2", "rejected", "No such image: nb:1", container=False)],
                          expected)
    assert outcome == JobOutcome(pulled=("n1",), failed=(("n2", "No such image: nb:1"),))


def test_a_command_that_fails_still_means_the_image_is_there():
    outcome = job_outcome([task("n1", "failed", "task: non-zero exit (127)")], {"n1"})
    assert outcome == JobOutcome(exited=(("n1", "task: non-zero exit (127)"),))


def test_the_log_says_what_was_pulled_where_and_why_not():
    names = {"n1": "manager1", "n2": "cpu1"}.get
    words = outcome_words("nb:1", JobOutcome(pulled=("n2", "n1"),
                                            failed=(("n3", "No such image: nb:1"),)),
                          lambda n: names(n) or n, 3.2)
    assert words == ("Pre-pulled nb:1 on cpu1, manager1 in 3s; "
                     "could not pre-pull nb:1 on n3: No such image: nb:1")


# -- cleanup ---------------------------------------------------------------------

def service(ident, name, labels=None):
    return {"ID": ident, "Spec": {"Name": name, "Labels": labels or {}}}


def test_a_starting_hub_removes_its_own_old_jobs_only():
    mine = prepull_job_name("jhub_jupyterhub", "nb:1")
    services = [
        service("j1", mine, {PREPULL_LABEL: "nb:1", HUB_LABEL: "jhub_jupyterhub"}),
        service("j2", prepull_job_name("other_jupyterhub", "nb:1"),
                {PREPULL_LABEL: "nb:1", HUB_LABEL: "other_jupyterhub"}),
        service("u1", "jupyter-alice", {HUB_LABEL: "jhub_jupyterhub"}),
    ]
    assert stale_jobs(services, "jhub_jupyterhub", {mine}) == [("j1", mine)]
    unnamed = prepull_job_name("", "nb:1")
    services.append(service("j3", unnamed, {PREPULL_LABEL: "nb:1"}))
    services.append(service("j4", prepull_job_name("", "nb:2"), {PREPULL_LABEL: "nb:2"}))
    assert stale_jobs(services, "", {unnamed}) == [("j3", unnamed)]


def test_the_leftover_removal_leaves_the_jobs_to_the_pre_puller():
    services = [service("j1", prepull_job_name("h", "nb:1"), {PREPULL_LABEL: "nb:1"}),
                service("u1", "jupyter-bob")]
    assert find_leftovers(services, [], owned=set()) == ([("u1", "jupyter-bob")], [])


# -- the loop, against a fake engine ---------------------------------------------------

class FakeEngine:
    """docker's APIClient as the Prepuller calls it: a job's tasks end on
    every node it may run on (all nodes here) at the next look."""

    def __init__(self, nodes, missing=()):
        self.nodes_ = nodes
        self.missing = set(missing)
        self.jobs = {}  # id -> spec
        self.constraints = {}  # image -> its job's placement constraints
        self.created, self.removed = [], []
        self.looks = 0

    def nodes(self):
        return self.nodes_

    def info(self):  # the hub talks to the first node's engine
        return {"Swarm": {"NodeID": self.nodes_[0]["ID"]}}

    def services(self, filters=None):
        return []

    def create_service(self, task_template, name, labels, mode):
        ident = f"s{len(self.created)}"
        self.jobs[ident] = (task_template["ContainerSpec"]["Image"], name)
        self.constraints[task_template["ContainerSpec"]["Image"]] = (
            task_template.get("Placement") or {}).get("Constraints") or []
        self.created.append(name)
        return {"ID": ident}

    def tasks(self, filters):
        image, _ = self.jobs[filters["service"]]
        if image in self.missing:
            return [task(n["ID"], "rejected", f"No such image: {image}", container=False)
                    for n in self.nodes_]
        return [task(n["ID"], "complete") for n in self.nodes_]

    def remove_service(self, ident):
        self.removed.append(self.jobs.pop(ident)[1])


async def rounds(prepuller, count):
    for _ in range(count):
        finished = await prepuller.check_jobs()
        await prepuller.start_jobs() if finished or not prepuller.jobs else None


def test_the_loop_pulls_once_removes_the_jobs_and_acts_again_only_for_a_new_node():
    engine = FakeEngine([MANAGER, CPU])
    log = Log()
    prepuller = Prepuller((PullTarget("nb:1"), PullTarget("nb:x")), (), "hub", log, engine,
                          retry=600)
    prepuller.hostnames = {}
    asyncio.run(prepuller.start_jobs())
    assert len(engine.created) == 2
    asyncio.run(rounds(prepuller, 3))
    assert len(engine.created) == 2 and sorted(engine.removed) == sorted(engine.created)
    assert "Pre-pulled nb:1 on cpu1, manager1 in" in log.text()
    engine.nodes_ = [MANAGER, CPU, GPU]  # a node joins
    asyncio.run(rounds(prepuller, 3))
    assert len(engine.created) == 4 and not engine.jobs
    assert "Pre-pulled nb:1 on cpu1, gpu1, manager1 in" in log.text()


def test_a_missing_image_is_said_once_and_not_tried_again_in_a_loop():
    engine = FakeEngine([MANAGER], missing={"nb:gone"})
    log = Log()
    prepuller = Prepuller((PullTarget("nb:gone"),), (), "hub", log, engine, retry=600)
    asyncio.run(prepuller.start_jobs())
    asyncio.run(rounds(prepuller, 10))
    assert engine.created == [prepull_job_name("hub", "nb:gone")] and not engine.jobs
    failures = [line for level, line in log.lines if level == "warning"]
    assert failures == ["could not pre-pull nb:gone on manager1: No such image: nb:gone"]


def test_an_image_no_node_may_run_is_said_once_not_at_every_look():
    engine = FakeEngine([MANAGER, CPU])
    log = Log()
    prepuller = Prepuller((PullTarget("nb:1"), PullTarget("nb:cuda", (), 1)), (), "hub", log,
                          engine)
    asyncio.run(rounds(prepuller, 2))
    asyncio.run(prepuller.start_jobs())
    said = [line for _, line in log.lines if "no ready node may run" in line]
    assert said == ["Pre-pull: no ready node may run nb:cuda now (their constraints, "
                    "platforms or GPUs): not pulled"]
    assert prepull_job_name("hub", "nb:cuda") not in engine.created


class HubNodeCopies(FakeEngine):
    """The hub node holds nb:1 as pulled from a registry, nb:local built
    there, and not nb:new."""

    DIGEST = "sha256:" + "12" * 32

    def inspect_image(self, image):
        if image == "reg/nb:1":
            return {"Id": "a", "RepoDigests": [f"reg/nb@{self.DIGEST}"]}
        if image == "reg/nb:local":
            return {"Id": "b", "RepoDigests": []}
        raise NotFound(f"No such image: {image}")


@pytest.mark.parametrize("policy, pinned", [("ifnotpresent", True), ("always", False)])
def test_with_ifnotpresent_a_job_pulls_the_digest_the_servers_will_run(policy, pinned):
    engine = HubNodeCopies([MANAGER, CPU])
    cfg = load_config({"SPAWNER_NETWORK_NAME": "jupyterhub_network",
                       "SPAWNER_NOTEBOOK_IMAGE": "reg/nb:1", "SPAWNER_PULL_POLICY": policy,
                       "SPAWNER_CONSTRAINT_IMAGES": "new->reg/nb:new;own->reg/nb:local"})
    prepuller = prepuller_from_config(cfg, Log())
    prepuller._client = engine
    asyncio.run(prepuller.start_jobs())
    pulled = sorted(image for image, _ in engine.jobs.values())
    first = f"reg/nb:1@{HubNodeCopies.DIGEST}" if pinned else "reg/nb:1"
    assert pulled == sorted([first, "reg/nb:local", "reg/nb:new"]), pulled


def test_the_hubs_own_node_gets_each_image_some_node_may_run():
    """The servers run on workers only, but the hub's check before each
    spawn (SPAWNER_PULL_POLICY) pulls on the manager it talks to: the jobs
    cover it too, except for an image no node may run."""
    engine = FakeEngine([MANAGER, CPU, GPU])
    prepuller = Prepuller((PullTarget("nb:1", ("node.role==worker",)),
                           PullTarget("nb:cuda", ("node.role==worker",), 1),
                           PullTarget("nb:tpu", ("node.labels.tpu==yes",))), (), "hub", Log(), engine)
    asyncio.run(prepuller.start_jobs())
    expected = {image: sorted(prepuller.hostname(n) for n in job.expected)
                for image, job in prepuller.jobs.items()}
    assert expected == {"nb:1": ["cpu1", "gpu1", "manager1"], "nb:cuda": ["gpu1", "manager1"]}
    assert set(engine.constraints) == {"nb:1", "nb:cuda"}
    # the jobs' own constraints say the same to swarm: no other node takes them
    for image, nodes in expected.items():
        constraints = engine.constraints[image]
        allowed = [n["Description"]["Hostname"] for n in (MANAGER, CPU, GPU)
                   if node_matches(n, constraints)]
        assert sorted(allowed) == nodes, (image, constraints)


def test_the_e2e_harness_knows_the_jobs_names():
    """tests/e2e/swarm.py tells the pre-pull jobs from user servers by this
    prefix (without importing the hub's module)."""
    from e2e import swarm
    assert swarm.PREPULL_JOB_PREFIX == PREPULL_PREFIX

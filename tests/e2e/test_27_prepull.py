"""Pre-pull (SPAWNER_PREPULL) on the real swarm: once the hub has started,
one global swarm service (a job: `true` once per node) per image its servers may get (the default, each
suffix rule's), whose task runs `true` on the node and completes; the hub
removes each job afterwards and says in its log what was pulled where, and
why an image that exists nowhere was not. A GPU rule's image gets no job on
this node, which advertises no GPU. With the tests' registry
(scripts/registry-up.sh, on JHSWARM_REGISTRY_ADDR) a rule's image that the
node does not have is really pulled from it. With SPAWNER_PREPULL=false no
job is made.

The jobs live a few seconds: the engine's event stream, read from before
the deployment, is what shows them made, their containers run and exit 0
on the node, and the jobs removed."""

import json
import os
import secrets
import subprocess
import threading
import time

import pytest
import requests

from jupyterhub_swarm import PREPULL_LABEL, PREPULL_PREFIX, prepull_job_name

from . import swarm
from .conftest import (BASE_RULE_IMAGE, GPU_IMAGE, MISSING_IMAGE, NOTEBOOK_IMAGE,
                       PRODUCT_DEFAULT_NOTEBOOK, Deployment, deploy, observe, phase)
from .swarm import log, wait_for

DEFAULT_IMAGE = NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK
REGISTRY = os.environ.get("JHSWARM_REGISTRY_ADDR", "127.0.0.1:5000")
SETTLE = 70  # seconds: past the pre-puller's first look at the nodes (every 60 s)
# a tag of the notebook stand-in made for this run, pushed, then untagged
# here: only a pull from the registry brings it back
PULLED_IMAGE = f"{REGISTRY}/jhswarm-standin/notebook:prepull-{secrets.token_hex(4)}"


def registry_answers():
    try:
        return requests.get(f"http://{REGISTRY}/v2/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def image_here(ref):
    return swarm.docker("image", "inspect", ref, check=False).returncode == 0


class Events:
    """`docker events` for services and containers, from now on."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [swarm.DOCKER, "events", "--format", "{{json .}}", "--filter", "type=service",
             "--filter", "type=container"], stdout=subprocess.PIPE, text=True)
        self.seen = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.seen.append(json.loads(line))
            except ValueError:
                pass

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def of_service(self, name):
        """[(type, action, attributes)] of the service `name` and its containers."""
        found = []
        for e in list(self.seen):
            attrs = (e.get("Actor") or {}).get("Attributes") or {}
            if e.get("Type") == "service" and attrs.get("name") == name:
                found.append(("service", e.get("Action"), attrs))
            elif e.get("Type") == "container" and attrs.get("com.docker.swarm.service.name") == name:
                found.append(("container", e.get("Action"), attrs))
        return found

    def job_names(self):
        return {(e["Actor"]["Attributes"].get("name") or "") for e in list(self.seen)
                if e.get("Type") == "service" and e.get("Action") == "create"
                and (e["Actor"]["Attributes"].get("name") or "").startswith(PREPULL_PREFIX)}


def job_done(events, name, ran=True):
    """True once the job `name` was made, its container exited (unless not
    `ran`: swarm rejects the task of an image that exists nowhere, and no
    container is made) and the job was removed."""
    actions = [(kind, action) for kind, action, _ in events.of_service(name)]
    return (("service", "create") in actions and ("service", "remove") in actions
            and (("container", "die") in actions or not ran))


@pytest.fixture(scope="module")
def prepull_hub(e2e_env):
    with_registry = registry_answers()
    if with_registry:
        swarm.docker("tag", DEFAULT_IMAGE, PULLED_IMAGE)
        swarm.docker("push", PULLED_IMAGE, timeout=600)
        swarm.docker("image", "rm", PULLED_IMAGE)
        assert not image_here(PULLED_IMAGE)
    rules = (f"base->{BASE_RULE_IMAGE};missing->{MISSING_IMAGE};"
             f"gpu:calculation_type==gpu->{GPU_IMAGE}")
    if with_registry:
        rules += f";reg->{PULLED_IMAGE}"
    events = Events()
    try:
        hub = deploy(SPAWNER_PREPULL="true", SPAWNER_PULL_POLICY="ifnotpresent",
                     SPAWNER_CONSTRAINT_IMAGES=rules, SPAWNER_CONSTRAINT_WITH_GPUS="gpu->1")
        yield hub, events, with_registry
    finally:
        events.stop()
        Deployment.current = None
        if with_registry:
            swarm.docker("image", "rm", PULLED_IMAGE, check=False)
        if os.environ.get("JHSWARM_E2E_KEEP") != "1":
            with phase("teardown"):
                swarm.cleanup()


def test_each_image_gets_a_global_service_that_runs_once_on_the_node_and_is_removed(prepull_hub):
    hub, events, with_registry = prepull_hub
    hub_name = swarm.HUB_SERVICE  # HUB_SERVICE_NAME, as the stack file sets it
    node = swarm.node_id()
    hostname = swarm.docker("info", "--format", "{{.Name}}").stdout.strip()
    present = [DEFAULT_IMAGE, BASE_RULE_IMAGE]
    names = {image: prepull_job_name(hub_name, image) for image in present + [MISSING_IMAGE]}
    with phase("prepull: every job made, run and removed"):
        wait_for(lambda: all(job_done(events, names[i], ran=i != MISSING_IMAGE) for i in names),
                 180, "the pre-pull jobs to run and be removed", interval=1)
        wait_for(lambda: f"could not pre-pull {MISSING_IMAGE}" in swarm.hub_logs(100000), 60,
                 "the hub to log the missing image")
        if with_registry:
            # the registry's image may still be coming: its job is the next
            # test's, but it must be gone before the look for leftovers below
            pulled = prepull_job_name(hub_name, PULLED_IMAGE)
            wait_for(lambda: job_done(events, pulled), 300, f"the job {pulled}", interval=1)
    logs = swarm.hub_logs(100000)
    for image in present:
        found = events.of_service(names[image])
        dies = [attrs for kind, action, attrs in found if kind == "container" and action == "die"]
        assert len(dies) == 1, found
        die = dies[0]
        assert die.get("exitCode") == "0", die
        assert die.get("image", "").split("@")[0] == image, die
        assert die.get(PREPULL_LABEL) == image, die
        assert die.get("com.docker.swarm.node.id") == node, die
        # a global service's task is named <service>.<node ID>.<task ID>
        assert die.get("com.docker.swarm.task.name", "").startswith(f"{names[image]}.{node}."), die
        assert f"Pre-pulled {image} on {hostname} in" in logs, logs[-3000:]
        observe(f"prepull: {names[image]} ran `true` from {image} on {hostname}, exit 0, removed")
    # the image that exists nowhere: swarm rejected the task (no container ran)
    missing = events.of_service(names[MISSING_IMAGE])
    assert not [a for k, a, _ in missing if k == "container" and a == "start"], missing
    line = next(line for line in logs.splitlines() if f"could not pre-pull {MISSING_IMAGE}" in line)
    assert f"on {hostname}: No such image" in line, line
    observe(f"prepull: {line.split('] ', 1)[-1][:160]}")
    # said once: the failed node is not tried again at every look
    assert logs.count(f"could not pre-pull {MISSING_IMAGE}") == 1, logs[-3000:]
    # the GPU rule's image: this node advertises no GPU, so no job at all
    assert prepull_job_name(hub_name, GPU_IMAGE) not in events.job_names()
    assert events.job_names() <= set(names.values()) | {prepull_job_name(hub_name, PULLED_IMAGE)}
    # nothing of the pre-puller is left: no service, and no exited container
    # (a swarm global *job* would leave one per node: moby/moby#44312)
    assert not [s for s in swarm.service_names(PREPULL_PREFIX)], swarm.service_names(PREPULL_PREFIX)
    wait_for(lambda: not [c for c in swarm.containers() if c[1].startswith(PREPULL_PREFIX)], 60,
             "the pre-pull jobs' containers to be removed with their services")
    # and the leftover removal at start did not take the jobs for its own
    assert "Removed what an earlier run of this hub left behind" not in logs, logs[-3000:]


def test_an_image_the_node_lacks_is_pulled_from_the_registry(prepull_hub):
    hub, events, with_registry = prepull_hub
    if not with_registry:
        pytest.skip(f"no registry answers on {REGISTRY} (bash scripts/registry-up.sh starts one)")
    name = prepull_job_name(swarm.HUB_SERVICE, PULLED_IMAGE)
    with phase("prepull: the registry's image pulled onto the node"):
        wait_for(lambda: job_done(events, name), 300, f"the job {name}", interval=1)
    dies = [attrs for kind, action, attrs in events.of_service(name)
            if kind == "container" and action == "die"]
    assert [d.get("exitCode") for d in dies] == ["0"], dies
    assert image_here(PULLED_IMAGE), f"{PULLED_IMAGE} is not on the node after its job"
    hostname = swarm.docker("info", "--format", "{{.Name}}").stdout.strip()
    assert f"Pre-pulled {PULLED_IMAGE} on {hostname} in" in swarm.hub_logs(100000)
    observe(f"prepull: {PULLED_IMAGE} (pushed, then untagged here) pulled by its job")


def test_no_job_with_prepull_off(prepull_hub):
    _, _, _ = prepull_hub  # after the deployment above: this one replaces it
    events = Events()
    try:
        deploy(SPAWNER_PREPULL="false", SPAWNER_PULL_POLICY="ifnotpresent",
               SPAWNER_CONSTRAINT_IMAGES=f"base->{BASE_RULE_IMAGE}")
        with phase("prepull off: the hub says so, and makes no job"):
            wait_for(lambda: "Pre-pull is off (SPAWNER_PREPULL=false)" in swarm.hub_logs(100000),
                     120, "the hub to say that pre-pull is off")
            # the pre-puller decides right after the hub's start: the line
            # above comes where it would have made the jobs (they come within
            # a second of it when pre-pull is on); and no look at the nodes
            # a minute later makes any either
            time.sleep(SETTLE)
        assert events.job_names() == set(), events.job_names()
        assert swarm.service_names(PREPULL_PREFIX) == []
        observe("prepull: SPAWNER_PREPULL=false, no job made")
    finally:
        events.stop()
        log("prepull off: done")

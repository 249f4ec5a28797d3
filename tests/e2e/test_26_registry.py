"""Deploy and spawn the way operators do: every image from a registry.

A deployment of its own, from the local registry of scripts/registry-up.sh
(Debian's docker-registry on 127.0.0.1:5000; the test runs the script, a
second run is a check): the hub image (this repository's build), the proxy
stand-in and a notebook image are pushed there, their local copies under
the registry's names removed, and `docker stack deploy` runs WITHOUT
`--resolve-image never`, so the CLI pins each service to the registry's
digest and the engine pulls it.

Then SPAWNER_PULL_POLICY for real (the notebook image
127.0.0.1:5000/jhswarm-e2e/notebook:pull, a file /opt/jhswarm-pull-marker
in it says which push a server runs):

- ifnotpresent: a missing image is pulled (v1), and the server's service
  names it by the registry's digest (asked of the registry's own HTTP API);
  a tag the registry does not have fails fast with the registry's reason; a
  copy on the hub's node (v1 while the registry has v2) is what the server
  runs: the service names its digest, which swarm does not pull again
  (before pinning, swarm's executor pulled the tag on the task's node and
  the server ran v2);
- always (after `docker stack deploy` again): the hub pulls every time, and
  the server runs v3 pushed under the same tag, by v3's digest; with the
  registry stopped the spawn fails fast with the engine's reason, though
  the node has a copy;
- never: the image missing on the hub's node is refused before a service;
- skip: the hub does not look, the service names the tag, swarm pulls on
  the node and the server runs.

The registry is started again at the end, however the test ends. Durations
are printed (e2e observations); none is a threshold.
"""

import os
import subprocess
import time

import pytest
import requests

from . import swarm
from .conftest import (
    PASSWORD, PROJECT_IMAGE, USE_REAL, check_interpolation, deploy, observe, phase,
)
from .hubclient import start_and_wait
from .spawnwatch import start_and_watch
from .swarm import ROOT, log, wait_for
from .test_08_missing_image import page_message

pytestmark = pytest.mark.skipif(
    USE_REAL, reason="pushes the stand-in images (JHSWARM_USE_REAL_IMAGES=1 builds none)")

REGISTRY = os.environ.get("JHSWARM_REGISTRY_ADDR", "127.0.0.1:5000")
HUB_IMAGE = f"{REGISTRY}/jupyterhub-swarm:e2e"
PROXY_IMAGE = f"{REGISTRY}/jhswarm-standin/jupyterhub:6.1.1"  # pushed by registry-up.sh
BASE_NOTEBOOK = "jhswarm-standin/notebook:6.1.1"
NOTEBOOK = f"{REGISTRY}/jhswarm-e2e/notebook:pull"
NOT_IN_REGISTRY = f"{REGISTRY}/jhswarm-e2e/notebook:no-such-tag"
MARKER = "/opt/jhswarm-pull-marker"
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.oci.image.index.v1+json")

SETTINGS = {
    "JUPYTERHUB_IMAGE": HUB_IMAGE,
    "PROXY_IMAGE": PROXY_IMAGE,
    "SPAWNER_NOTEBOOK_IMAGE": NOTEBOOK,
    "SPAWNER_PULL_POLICY": "ifnotpresent",
    "SPAWNER_CONSTRAINT_IMAGES": f"nope->{NOT_IN_REGISTRY}",
    "SPAWNER_CPU_GUARANTEE": "0.1",
    "SPAWNER_MEM_GUARANTEE": "64M",
}


def registry(*args):
    """scripts/registry-up.sh [args]: (re)start the registry, or stop it."""
    proc = subprocess.run(["bash", "scripts/registry-up.sh", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"registry-up.sh {args} failed:\n{proc.stdout}\n{proc.stderr}"
    log("registry-up.sh " + " ".join(args) + ":\n" + proc.stderr.strip())


def image_id(ref):
    proc = swarm.docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def forget_locally(ref):
    """Remove every name of `ref`'s image under the registry (tags and
    digests; the image's layers stay if another name holds them): the engine
    must ask the registry for it again."""
    proc = swarm.docker("image", "inspect", "-f",
                        "{{range .RepoTags}}{{println .}}{{end}}{{range .RepoDigests}}{{println .}}{{end}}",
                        ref, check=False)
    names = [n for n in proc.stdout.split() if n.startswith(REGISTRY + "/")]
    for name in names:
        swarm.docker("image", "rm", name, check=False)
    assert image_id(ref) is None, f"{ref} still present locally"


def build_marked(version):
    """NOTEBOOK, locally, with MARKER saying `version`; returns its image id."""
    swarm.docker("build", "-q", "-t", NOTEBOOK, "-", env={**os.environ, "DOCKER_BUILDKIT": "0"},
                 input_text=f"FROM {BASE_NOTEBOOK}\nUSER root\nRUN echo {version} > {MARKER}\nUSER 1000\n", timeout=600)
    return image_id(NOTEBOOK)


def push(ref):
    swarm.docker("push", ref, timeout=900)
    digest = swarm.docker("image", "inspect", "-f", "{{range .RepoDigests}}{{println .}}{{end}}",
                          ref).stdout.split()
    log(f"pushed {ref}: {digest}")


def marker_of(service):
    container = swarm.container_of(service)
    assert container, f"no running container of {service}"
    return swarm.docker("exec", container, "cat", MARKER).stdout.strip()


def registry_digest(ref, addr=REGISTRY):
    """The digest the registry itself gives for `ref`'s tag (its HTTP API at
    `addr`, the address `ref` names; not the engine)."""
    name, tag = ref[len(addr) + 1:].rsplit(":", 1)
    r = requests.head(f"http://{addr}/v2/{name}/manifests/{tag}", timeout=30, headers={
        "Accept": ", ".join(MANIFEST_TYPES)})
    assert r.status_code == 200, (ref, r.status_code, r.headers)
    return r.headers["Docker-Content-Digest"]


def spec_image(service):
    return swarm.service_inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]


def running_image(service):
    """The image id the service's running container was made from."""
    container = swarm.container_of(service)
    return swarm.docker("inspect", "-f", "{{.Image}}", container).stdout.strip()


@pytest.fixture(scope="module")
def reg_hub(e2e_env):
    with phase("registry: registry-up.sh"):
        registry()
    with phase("registry: push the hub image and notebook v1, forget them locally"):
        swarm.docker("tag", PROJECT_IMAGE, HUB_IMAGE)
        push(HUB_IMAGE)
        build_marked("v1")
        push(NOTEBOOK)
        for ref in (HUB_IMAGE, PROXY_IMAGE, NOTEBOOK, NOT_IN_REGISTRY):
            forget_locally(ref)
    d = deploy(resolve_image=None, **SETTINGS)
    d.admin = d.admin_client()
    try:
        yield d
    finally:
        registry()  # running again, whatever happened
        if os.environ.get("JHSWARM_E2E_KEEP") != "1":
            with phase("registry: teardown"):
                swarm.cleanup()
                for ref in (NOTEBOOK, HUB_IMAGE):
                    swarm.docker("image", "rm", ref, check=False)


def make_user(d, name):
    return d.approved_user(name, PASSWORD, d.admin)


def reconfigure(d, **changes):
    """`docker stack deploy` again (registry images, resolved) with changed
    variables: the hub restarts, its data volume stays."""
    env = dict(d.env, **changes)
    old = swarm.hub_container()
    swarm.stack_deploy(env, resolve_image=None)
    wait_for(lambda: (swarm.hub_container() or old) != old, 180, "the reconfigured hub running")
    check_interpolation(env)
    d.env = env
    d.wait_healthy()
    log(f"hub reconfigured: {changes}")


def spawn(d, name, service, what):
    client = make_user(d, name)
    _, took = start_and_wait(client, name, timeout=300)
    marker = marker_of(service)
    observe(f"registry: {name} ({what}): ready in {took:.1f}s, {MARKER} says {marker!r}, "
            f"spec image {swarm.service_inspect(service)['Spec']['TaskTemplate']['ContainerSpec']['Image']}")
    return client, marker


def stop(client, name, service):
    client.stop_server(name)
    wait_for(lambda: service not in swarm.user_services(), 60, f"{service} removed")


def fails_fast(d, name, service, what):
    """Start `name`'s server through the API; it must fail with the image
    named, no service left. Returns the failure message."""
    client = make_user(d, name)
    r, events, took = start_and_watch(client, name, timeout=300)
    if events and events[-1].get("failed"):
        message = events[-1]["message"]
    else:  # refused before the progress stream opened: the POST's own answer
        assert r.status_code == 500, (r.status_code, r.text[:300], events)
        message = r.json()["message"]
    observe(f"registry: {name} ({what}): failed after {took:.1f}s; POST HTTP {r.status_code}; "
            f"message: {message!r}")
    assert "could not start" in message, message
    assert service not in swarm.user_services(), swarm.user_services()
    model = client.user_model(name)
    assert model["servers"] == {} and model["pending"] is None, model
    return message


def test_stack_deployed_from_the_registry(reg_hub):
    for service, ref in ((swarm.HUB_SERVICE, HUB_IMAGE), (swarm.PROXY_SERVICE, PROXY_IMAGE),
                         (swarm.DOCKER_API_SERVICE, HUB_IMAGE)):
        image = swarm.service_inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        observe(f"registry: {service} runs {image}")
        # the CLI asked the registry (no --resolve-image never): pinned by digest
        assert image.startswith(ref + "@sha256:"), image
        # the hub answers without docker-api: that one may still be starting
        wait_for(lambda: swarm.running_task(service), 120, f"a running task of {service}")
        # forgotten before the deploy: the engine pulled it back by that digest
        assert image_id(image) is not None, f"{image} not on the node"


def test_ifnotpresent_pulls_a_missing_image(reg_hub):
    assert image_id(NOTEBOOK) is None
    with phase("registry: ifnotpresent, image missing"):
        rita, marker = spawn(reg_hub, "rita", "jupyter-rita", "ifnotpresent, image not on the node")
        assert marker == "v1", marker
        assert image_id(NOTEBOOK) is not None, "the image is not on the node after the spawn"
        assert f"pulling image {NOTEBOOK}" in swarm.hub_logs(2000)
        # pinned: the digest the registry gives for the tag
        assert spec_image("jupyter-rita") == f"{NOTEBOOK}@{registry_digest(NOTEBOOK)}"
        stop(rita, "rita", "jupyter-rita")


def test_tag_the_registry_does_not_have(reg_hub):
    with phase("registry: ifnotpresent, tag not in the registry"):
        message = fails_fast(reg_hub, "rita-nope", "jupyter-rita-2dnope", "tag not in the registry")
        assert f"could not pull the image {NOT_IN_REGISTRY}" in message, message
        # the registry's own words, through the engine
        assert "manifest unknown" in message, message
    with phase("registry: the same in the browser's spawn page"):
        rosa = make_user(reg_hub, "rosa-nope")
        t0 = time.monotonic()
        r = rosa.get("/hub/spawn/rosa-nope")
        shown = page_message(r.text)
        observe(f"registry: rosa-nope (tag not in the registry), spawn page after "
                f"{time.monotonic() - t0:.1f}s: HTTP {r.status_code}: {shown!r}")
        assert r.status_code == 500, (r.status_code, r.url)
        assert NOT_IN_REGISTRY in shown and "manifest unknown" in shown, shown
        assert "jupyter-rosa-2dnope" not in swarm.user_services()


def test_ifnotpresent_runs_the_hub_nodes_copy_by_digest(reg_hub):
    with phase("registry: ifnotpresent, an older copy on the hub's node"):
        v1 = image_id(NOTEBOOK)
        v1_digest = registry_digest(NOTEBOOK)
        v2 = build_marked("v2")
        push(NOTEBOOK)
        swarm.docker("tag", v1, NOTEBOOK)  # the node keeps v1 under the tag
        assert image_id(NOTEBOOK) == v1 != v2
        assert registry_digest(NOTEBOOK) != v1_digest
        sam, marker = spawn(reg_hub, "sam", "jupyter-sam", "ifnotpresent, node has v1, registry v2")
        # the hub saw the tag and did not pull; the service names v1's
        # digest, which swarm does not pull again on a node that has it
        assert spec_image("jupyter-sam") == f"{NOTEBOOK}@{v1_digest}"
        assert marker == "v1", marker
        assert running_image("jupyter-sam") == v1
        stop(sam, "sam", "jupyter-sam")


def test_always_picks_up_a_new_digest_and_fails_fast_without_registry(reg_hub):
    with phase("registry: stack deploy again with SPAWNER_PULL_POLICY=always"):
        reconfigure(reg_hub, SPAWNER_PULL_POLICY="always")
    with phase("registry: always, v3 pushed under the same tag"):
        older = image_id(NOTEBOOK)
        v3 = build_marked("v3")
        push(NOTEBOOK)
        swarm.docker("tag", older, NOTEBOOK)
        tom, marker = spawn(reg_hub, "tom", "jupyter-tom", "always, node has an older copy, registry v3")
        assert marker == "v3", marker
        assert running_image("jupyter-tom") == v3
        assert spec_image("jupyter-tom") == f"{NOTEBOOK}@{registry_digest(NOTEBOOK)}"
        assert f"pulling {NOTEBOOK}" in swarm.hub_logs(2000)
        stop(tom, "tom", "jupyter-tom")
    with phase("registry: always, registry stopped"):
        registry("stop")
        try:
            assert image_id(NOTEBOOK) == v3  # the node has the image
            message = fails_fast(reg_hub, "uma", "jupyter-uma", "always, registry stopped")
            assert f"could not pull the image {NOTEBOOK}" in message, message
            assert "connection refused" in message.lower(), message
        finally:
            registry()


def test_never_refuses_what_the_hubs_node_lacks(reg_hub):
    with phase("registry: stack deploy again with SPAWNER_PULL_POLICY=never"):
        reconfigure(reg_hub, SPAWNER_PULL_POLICY="never")
    forget_locally(NOTEBOOK)
    with phase("registry: never, image missing"):
        message = fails_fast(reg_hub, "vic", "jupyter-vic", "never, image not on the node")
        assert "SPAWNER_PULL_POLICY=never" in message and NOTEBOOK in message, message


def test_skip_leaves_the_pull_to_swarm(reg_hub):
    with phase("registry: stack deploy again with SPAWNER_PULL_POLICY=skip"):
        reconfigure(reg_hub, SPAWNER_PULL_POLICY="skip")
    assert image_id(NOTEBOOK) is None
    with phase("registry: skip, image missing"):
        t0 = time.monotonic()
        wes, marker = spawn(reg_hub, "wes", "jupyter-wes", "skip, image not on the node")
        assert marker == "v3", marker
        assert spec_image("jupyter-wes") == NOTEBOOK  # the tag: swarm resolves it
        log(f"skip spawn took {time.monotonic() - t0:.1f}s")
        stop(wes, "wes", "jupyter-wes")

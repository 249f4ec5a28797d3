"""The image a server's service names: the digest of the hub node's copy
(pinned_image), so every node runs what the hub checked or pulled. The
real-registry behaviour is tests/e2e/test_26_registry.py's."""

import asyncio

import pytest
from conftest import load_config
from jupyterhub_swarm import familiar_name, pinned_image, split_image
from spawner_harness import RecordingDocker, make_spawner

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.mark.parametrize("image, parts", [
    ("jupyter/base-notebook:notebook-6.5.4", ("jupyter/base-notebook", "notebook-6.5.4", "")),
    ("127.0.0.1:5000/lab/nb", ("127.0.0.1:5000/lab/nb", "", "")),
    ("127.0.0.1:5000/lab/nb:v2", ("127.0.0.1:5000/lab/nb", "v2", "")),
    (f"nb:v2@{DIGEST}", ("nb", "v2", DIGEST)),
    (f"host:5000/nb@{DIGEST}", ("host:5000/nb", "", DIGEST)),
])
def test_split_image(image, parts):
    assert split_image(image) == parts


def test_familiar_name_is_dockers_spelling():
    assert familiar_name("docker.io/library/python") == "python"
    assert familiar_name("docker.io/jupyter/base-notebook") == "jupyter/base-notebook"
    assert familiar_name("quay.io/jupyter/base-notebook") == "quay.io/jupyter/base-notebook"
    assert familiar_name("127.0.0.1:5000/library/nb") == "127.0.0.1:5000/library/nb"


@pytest.mark.parametrize("image, held, pinned", [
    # the node's copy came from a registry: that digest, the tag kept for people
    ("127.0.0.1:5000/lab/nb:v2", [f"127.0.0.1:5000/lab/nb@{DIGEST}"],
     f"127.0.0.1:5000/lab/nb:v2@{DIGEST}"),
    ("127.0.0.1:5000/lab/nb", [f"127.0.0.1:5000/lab/nb@{DIGEST}"],
     f"127.0.0.1:5000/lab/nb:latest@{DIGEST}"),
    # Docker Hub names as docker shows them in RepoDigests
    ("docker.io/jupyter/base-notebook:x", [f"jupyter/base-notebook@{DIGEST}"],
     f"docker.io/jupyter/base-notebook:x@{DIGEST}"),
    ("python:3.12", [f"python@{DIGEST}"], f"python:3.12@{DIGEST}"),
    # the same image pushed under another name as well: the digest of this name
    ("reg/a:1", [f"reg/b@{OTHER}", f"reg/a@{DIGEST}"], f"reg/a:1@{DIGEST}"),
    # built on the node, never pushed or pulled: nothing to pin to
    ("lab/nb:v2", [], "lab/nb:v2"),
    ("reg/a:1", [f"reg/b@{OTHER}"], "reg/a:1"),
    # already pinned by the operator
    (f"reg/a:1@{OTHER}", [f"reg/a@{DIGEST}"], f"reg/a:1@{OTHER}"),
])
def test_pinned_image(image, held, pinned):
    assert pinned_image(image, held) == pinned


class HeldDigests(RecordingDocker):
    """The hub node's copy of every image came from a registry."""

    def __init__(self, network, held):
        super().__init__(network)
        self.held = held
        self.looked_at = []

    async def __call__(self, method, *args, **kwargs):
        if method == "inspect_image":
            self.looked_at.append(args[0])
            return {"Id": "img", "RepoDigests": self.held}
        if method == "pull":  # dockerspawner's, with always: done
            return None
        return await super().__call__(method, *args, **kwargs)


def start(cfg, name, held):
    spawner = make_spawner(cfg, name)
    spawner.docker = fake = HeldDigests(spawner.network_name, held)
    asyncio.run(spawner.start())
    return fake, spawner


def service_image(created):
    return created["task_template"]["ContainerSpec"]["Image"]


@pytest.mark.parametrize("policy", ["ifnotpresent", "always", "never"])
def test_the_service_runs_the_digest_the_hub_checked(policy):
    image = "127.0.0.1:5000/lab/nb:v2"
    cfg = load_config({"SPAWNER_NETWORK_NAME": "jupyterhub_network",
                       "SPAWNER_NOTEBOOK_IMAGE": image, "SPAWNER_PULL_POLICY": policy})
    fake, spawner = start(cfg, "pia", [f"127.0.0.1:5000/lab/nb@{DIGEST}"])
    assert service_image(fake.created) == f"{image}@{DIGEST}"
    assert fake.looked_at[-1] == image
    # the next spawn starts again from the configured tag (nothing kept)
    again = HeldDigests(spawner.network_name, [f"127.0.0.1:5000/lab/nb@{OTHER}"])
    spawner.docker = again
    spawner.clear_state()
    asyncio.run(spawner.start())
    assert service_image(again.created) == f"{image}@{OTHER}"
    assert cfg.SwarmUserSpawner.image == image


def test_skip_leaves_the_tag_to_swarm():
    image = "127.0.0.1:5000/lab/nb:v2"
    cfg = load_config({"SPAWNER_NETWORK_NAME": "jupyterhub_network",
                       "SPAWNER_NOTEBOOK_IMAGE": image, "SPAWNER_PULL_POLICY": "skip"})
    fake, _ = start(cfg, "quin", [f"127.0.0.1:5000/lab/nb@{DIGEST}"])
    assert service_image(fake.created) == image
    assert fake.looked_at == []

"""Named servers (HUB_ALLOW_NAMED_SERVERS): each its own swarm service,
`jupyter-<user>-s-<server>`, a valid DNS label, distinct from every other
user's and server's, and the same user volume as the user's default
server."""

import re

import pytest

from conftest import load_config
from jupyterhub_swarm import escape_username, service_name
from spawner_harness import spawn_spec

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def name(user, server=""):
    return service_name("jupyter", escape_username(user),
                        escaped_server=escape_username(server) if server else "")


def test_a_named_server_is_its_own_service():
    assert name("ann") == "jupyter-ann"
    assert name("ann", "gpu") == "jupyter-ann-s-gpu"
    assert name("ann-gpu") == "jupyter-ann-2dgpu"  # a suffix user: no clash with ann's "gpu"


@pytest.mark.parametrize("a, b", [
    (("a", "s-b"), ("a-s", "b")),  # the mark cannot be moved between user and server
    (("a", "b"), ("a-s-b", "")),  # a user whose name holds the mark
    (("a", "b"), ("a-s", "")),
    (("x" * 40, "y" * 30), ("x" * 40, "y" * 31)),  # both cut to 63 characters
    (("x" * 40, "y" * 30), ("x" * 40 + "-s-" + "y" * 30, "")),
])
def test_distinct_servers_get_distinct_valid_names(a, b):
    na, nb = name(*a), name(*b)
    assert na != nb, (a, b, na)
    for n in (na, nb):
        assert LABEL.match(n) and len(n) <= 63, n


def test_every_server_of_a_user_mounts_the_users_volume():
    cfg = load_config(HUB_ALLOW_NAMED_SERVERS="true")
    default, _, _ = spawn_spec(cfg, "ann")
    named, _, spawner = spawn_spec(cfg, "ann", server="gpu")
    assert named["name"] == "jupyter-ann-s-gpu" and default["name"] == "jupyter-ann"
    mounts = [spec["task_template"]["ContainerSpec"]["Mounts"] for spec in (default, named)]
    assert mounts[0] == mounts[1] and mounts[0][0]["Source"] == "jupyterhub-user-ann", mounts
    assert spawner.object_name == "jupyter-ann-s-gpu"


def test_the_settings_reach_jupyterhub():
    c = load_config(HUB_ALLOW_NAMED_SERVERS="true", HUB_NAMED_SERVER_LIMIT_PER_USER="2")
    assert c.JupyterHub.allow_named_servers is True
    assert c.JupyterHub.named_server_limit_per_user == 2
    off = load_config()
    assert off.JupyterHub.allow_named_servers is False

"""Mounts for local, NFS v3/v4 and CIFS: real swarm volume mounts per user."""

import os

import pytest


def storage(ns, **kw):
    return ns["Storage"](**kw)


def test_local_is_a_named_volume_not_a_bind(ns):
    mount = ns["storage_mount"](storage(ns), "alice-2dtorch")
    assert mount == {
        "type": "volume",
        "source": "jupyterhub-user-alice-2dtorch",
        "target": "/home/jovyan/work/persistence",
    }


@pytest.mark.parametrize("kind,opts", [("nfs3", ",rw,vers=3,nolock,soft"), ("nfs4", ",rw,nfsvers=4,async")])
def test_nfs_uses_the_local_driver_with_type_nfs(ns, kind, opts):
    st = storage(ns, type=kind, host="10.0.0.10", device=":/nas/jupyterhub/{username}", opts=opts)
    mount = ns["storage_mount"](st, "bob")
    assert mount["type"] == "volume"
    assert mount["driver_config"] == {
        "name": "local",
        "options": {"type": "nfs", "o": f"addr=10.0.0.10{opts}", "device": ":/nas/jupyterhub/bob"},
    }


def test_nfs_device_without_placeholder_still_gives_each_user_a_directory(ns):
    st = storage(ns, type="nfs3", host="h", device=":/var/docker-nfs", opts="")
    a = ns["storage_mount"](st, "alice")["driver_config"]["options"]["device"]
    b = ns["storage_mount"](st, "bob")["driver_config"]["options"]["device"]
    assert a == ":/var/docker-nfs/alice"
    assert b == ":/var/docker-nfs/bob"


def test_cifs_is_typed_cifs(ns):
    st = storage(ns, type="cifs", host="u1.your-server.de",
                 device="//u1.your-server.de/backup", opts=",file_mode=0777,dir_mode=0777")
    options = ns["storage_mount"](st, "carol")["driver_config"]["options"]
    assert options == {
        "type": "cifs",
        "o": "addr=u1.your-server.de,file_mode=0777,dir_mode=0777",
        "device": "//u1.your-server.de/backup/carol",
    }


def test_cifs_device_given_as_a_path_gets_the_host(ns):
    st = storage(ns, type="cifs", host="srv", device="/share/{username}/home", opts="")
    options = ns["storage_mount"](st, "dan")["driver_config"]["options"]
    assert options["device"] == "//srv/share/dan/home"


def test_user_directory_is_inside_the_share_root(ns, tmp_path):
    st = storage(ns, type="nfs3", host="h", device=":/nas/jh/{username}/work", mkdir_root=str(tmp_path))
    assert ns["user_directory"](st, "alice") == os.path.join(str(tmp_path), "alice", "work")
    assert ns["user_directory"](storage(ns), "alice") is None
    for hostile in ("..", "../x", "a/../../b"):
        with pytest.raises(ValueError):
            ns["user_directory"](st, hostile)


def test_bad_placeholder_is_an_error(ns):
    with pytest.raises(ValueError):
        ns["storage_mount"](storage(ns, source_name="vol-{user}"), "alice")
    with pytest.raises(ValueError):
        ns["storage_mount"](storage(ns, source_name="vol {username}"), "alice")

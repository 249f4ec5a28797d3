"""Mounts for local, NFS v3/v4 and CIFS: real swarm volume mounts per user."""

import os

import pytest
from jupyterhub_swarm import Storage, share_root, storage_mount, user_directory


def storage(**kw):
    """The default local storage of a user, with the fields in kw changed."""
    fields = dict(type="local", source_name="jupyterhub-user-{username}",
                  target="/home/jovyan/work/persistence", mkdir_root="/jupyterhub_data",
                  owner=(1000, 100))
    return Storage(**dict(fields, **kw))


def test_local_is_a_named_volume_not_a_bind():
    mount = storage_mount(storage(), "alice-2dtorch")
    assert mount == {
        "type": "volume",
        "source": "jupyterhub-user-alice-2dtorch",
        "target": "/home/jovyan/work/persistence",
    }


@pytest.mark.parametrize("kind,opts", [("nfs3", ",rw,vers=3,nolock,soft"), ("nfs4", ",rw,nfsvers=4,async")])
def test_nfs_uses_the_local_driver_with_type_nfs(kind, opts):
    st = storage(type=kind, host="10.0.0.10", device=":/nas/jupyterhub/{username}", opts=opts)
    mount = storage_mount(st, "bob")
    assert mount["type"] == "volume"
    assert mount["driver_config"] == {
        "name": "local",
        "options": {"type": "nfs", "o": f"addr=10.0.0.10{opts}", "device": ":/nas/jupyterhub/bob"},
    }


def test_nfs_device_without_placeholder_still_gives_each_user_a_directory():
    st = storage(type="nfs3", host="h", device=":/var/docker-nfs", opts="")
    a = storage_mount(st, "alice")["driver_config"]["options"]["device"]
    b = storage_mount(st, "bob")["driver_config"]["options"]["device"]
    assert a == ":/var/docker-nfs/alice"
    assert b == ":/var/docker-nfs/bob"


def test_cifs_is_typed_cifs():
    st = storage(type="cifs", host="u1.your-server.de",
                 device="//u1.your-server.de/backup", opts=",file_mode=0777,dir_mode=0777")
    options = storage_mount(st, "carol")["driver_config"]["options"]
    assert options == {
        "type": "cifs",
        "o": "addr=u1.your-server.de,file_mode=0777,dir_mode=0777",
        "device": "//u1.your-server.de/backup/carol",
    }


def test_cifs_device_given_as_a_path_gets_the_host():
    st = storage(type="cifs", host="srv", device="/share/{username}/home", opts="")
    options = storage_mount(st, "dan")["driver_config"]["options"]
    assert options["device"] == "//srv/share/dan/home"


def test_user_directory_is_inside_the_share_root(tmp_path):
    st = storage(type="nfs3", host="h", device=":/nas/jh/{username}/work", mkdir_root=str(tmp_path))
    assert user_directory(st, "alice") == os.path.join(str(tmp_path), "alice", "work")
    assert user_directory(storage(), "alice") is None
    for hostile in ("..", "../x", "a/../../b"):
        with pytest.raises(ValueError):
            user_directory(st, hostile)


def test_bad_placeholder_is_an_error():
    with pytest.raises(ValueError):
        storage_mount(storage(source_name="vol-{user}"), "alice")
    with pytest.raises(ValueError):
        storage_mount(storage(source_name="vol {username}"), "alice")


# -- the share's root, mounted into the hub (docker-compose.nfs.yml / .cifs.yml)

NFS = dict(SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3", SPAWNER_PERSISTENCE_NFS_HOST="10.0.0.10",
           SPAWNER_PERSISTENCE_NFS_DEVICE=":/nas/jupyterhub/{username}")


@pytest.mark.parametrize("device,root", [
    (":/nas/jupyterhub/{username}", "/nas/jupyterhub"),
    (":/nas/jupyterhub/{username}/work", "/nas/jupyterhub"),
    (":/var/docker-nfs", "/var/docker-nfs"),  # users get /var/docker-nfs/<user>
    (":/home-{username}", "/"),
])
def test_the_share_root_defaults_to_the_device_before_username(device, root):
    assert share_root(storage(type="nfs3", host="h", device=device)) == root


def test_cifs_share_root_has_no_host():
    st = storage(type="cifs", host="srv", device="//srv/backup/jh/{username}")
    assert share_root(st) == "/backup/jh"
    assert share_root(storage(type="cifs", host="srv", device="/backup")) == "/backup"


def test_user_directory_below_a_root_above_the_device(tmp_path):
    st = storage(type="nfs3", host="h", device=":/nas/jupyterhub/{username}", root="/nas",
                 mkdir_root=str(tmp_path))
    assert user_directory(st, "bob") == os.path.join(str(tmp_path), "jupyterhub", "bob")
    # the user's volume does not change with the root
    assert storage_mount(st, "bob")["driver_config"]["options"]["device"] == ":/nas/jupyterhub/bob"


def test_config_records_the_share_root_the_stack_must_mount():
    from conftest import load_config
    cfg = load_config(**NFS)
    st = cfg.SwarmUserSpawner.storage
    assert (st.root, share_root(st), st.mkdir_root) == ("", "/nas/jupyterhub", "/jupyterhub_data")
    cfg = load_config(SPAWNER_PERSISTENCE_NFS_ROOT="/nas/", **NFS)
    assert share_root(cfg.SwarmUserSpawner.storage) == "/nas"


@pytest.mark.parametrize("root", ["/nas/jupyterhub/alice", "/elsewhere", "/nas/jupyter",
                                  "nas/jupyterhub", "/nas/../etc"])
def test_a_share_root_that_does_not_hold_the_users_directories_is_refused(root):
    from conftest import config_error
    message = config_error(SPAWNER_PERSISTENCE_NFS_ROOT=root, **NFS)
    assert f"SPAWNER_PERSISTENCE_NFS_ROOT={root!r}" in message or root in message, message
    assert "/nas/jupyterhub (the part of SPAWNER_PERSISTENCE_NFS_DEVICE before {username})" \
        in message, message


def test_cifs_root_is_checked_against_the_cifs_device():
    from conftest import config_error
    message = config_error(SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs", SPAWNER_PERSISTENCE_CIFS_HOST="srv",
                           SPAWNER_PERSISTENCE_CIFS_DEVICE="//srv/backup/{username}",
                           SPAWNER_PERSISTENCE_CIFS_OPTS=",password=Sup3rS3cret",
                           SPAWNER_PERSISTENCE_CIFS_ROOT="/other")
    assert "SPAWNER_PERSISTENCE_CIFS_ROOT" in message and "/backup (the part" in message, message
    assert "Sup3rS3cret" not in message


def test_mkdirpath_must_be_a_directory_below_slash():
    from conftest import config_error
    for bad in ("/", "data"):
        message = config_error(SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=bad, **NFS)
        assert "SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH" in message, message

"""The service spec a user's spawn sends to swarm, per user, per setting.

Spawners are built the way the hub builds them (real ORM user, real
jupyterhub.user.User); only the docker client is replaced by a recorder.
tests/e2e checks the same specs on a real swarm.
"""

import asyncio
import os

import pytest
from conftest import load_config
from jupyterhub_swarm import SpawnFailed, SwarmUserSpawner
from spawner_harness import make_spawner, spawn_spec

RULES = {
    "SPAWNER_CONSTRAINTS": "node.role==manager",
    "SPAWNER_CONSTRAINT_IMAGES": (
        "torch:calculation_type==gpu->reg.example:5000/gpu/torch:2.0;"
        "base:calculation_type==cpu->jupyter/base-notebook:notebook-6.5.4"
    ),
    "SPAWNER_CONSTRAINT_WITH_GPUS": "torch->2",
}


def cfg_with(**env):
    return load_config(dict({"SPAWNER_NETWORK_NAME": "jupyterhub_network"}, **env))


def container(spec):
    return spec["task_template"]["ContainerSpec"]


def env_of(spec):
    return dict(line.split("=", 1) for line in container(spec)["Env"])


def reservations(spec):
    return spec["task_template"]["Resources"].get("Reservations", {})


def test_default_user_service():
    spec, address, spawner = spawn_spec(cfg_with(), "alice")
    assert spec["name"] == "jupyter-alice"
    assert container(spec)["Image"] == "jupyter/base-notebook:notebook-6.5.4"
    assert container(spec)["Args"] == ["start-singleuser.sh"]
    assert spec["task_template"]["Networks"] == [{"Target": "jupyterhub_network"}]
    assert container(spec)["Mounts"] == [{
        "Type": "volume", "Source": "jupyterhub-user-alice",
        "Target": "/home/jovyan/work/persistence", "ReadOnly": False,
    }]
    resources = spec["task_template"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 * 1024**3}
    assert resources["Reservations"] == {"NanoCPUs": 1_000_000_000, "MemoryBytes": 1024**3}
    assert "Placement" not in spec["task_template"] or not spec["task_template"]["Placement"]
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == "void"  # no GPU
    # a new named volume is root-owned: start as root, chown it, drop to jovyan
    assert container(spec)["User"] == "root"
    assert env_of(spec)["CHOWN_EXTRA"] == "/home/jovyan/work/persistence"
    # the hub connects to the task's own address, not the service name
    assert address == ("10.0.9.7", 8888)
    # a server that exits or dies is not restarted behind the hub's back
    assert spec["task_template"]["RestartPolicy"]["Condition"] == "none"


def test_settings_reach_the_service():
    spec, _, _ = spawn_spec(cfg_with(
        SPAWNER_NOTEBOOK_IMAGE="nb:1", SPAWNER_SPAWN_CMD="start-notebook.sh --debug",
        SPAWNER_CPU_LIMIT="1.5", SPAWNER_CPU_GUARANTEE="0.5", SPAWNER_MEM_LIMIT="2G",
        SPAWNER_MEM_GUARANTEE="512M", SPAWNER_ENVIRONMENT="TZ:Asia/Shanghai;PIP_INDEX:http://m:3141/s",
        SPAWNER_ENDPOINT_MODE="dnsrr", SPAWNER_NOTEBOOK_DIR="/home/jovyan",
        SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH="/keep",
        SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME="jh-{username}-data",
        SPAWNER_PREFERENCE="spread:zone", SPAWNER_PLATFORM="amd64:linux",
    ), "bob")
    assert container(spec)["Image"] == "nb:1"
    assert container(spec)["Args"] == ["start-notebook.sh", "--debug"]
    resources = spec["task_template"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2 * 1024**3}
    assert resources["Reservations"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 512 * 1024**2}
    env = env_of(spec)
    assert env["TZ"] == "Asia/Shanghai" and env["PIP_INDEX"] == "http://m:3141/s"
    assert spec["endpoint_spec"] == {"Mode": "dnsrr"}
    mount = container(spec)["Mounts"][0]
    assert (mount["Source"], mount["Target"]) == ("jh-bob-data", "/home/jovyan/keep")
    placement = spec["task_template"]["Placement"]
    assert placement["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert placement["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]


def test_suffix_user_gets_rule_image_constraints_and_gpus():
    spec, _, _ = spawn_spec(cfg_with(**RULES), "alice-torch")
    assert spec["name"] == "jupyter-alice-2dtorch"
    assert container(spec)["Image"] == "reg.example:5000/gpu/torch:2.0"
    assert spec["task_template"]["Placement"]["Constraints"] == [
        "node.role==manager", "node.labels.calculation_type==gpu"]
    assert reservations(spec)["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}]
    assert container(spec)["Mounts"][0]["Source"] == "jupyterhub-user-alice-2dtorch"


def test_no_setting_leaks_from_one_user_to_the_next():
    """The original image's config appended to shared dicts: the second user
    inherited the first one's GPUs and constraints."""
    cfg = cfg_with(**RULES)
    first, _, _ = spawn_spec(cfg, "alice-torch")
    plain, _, _ = spawn_spec(cfg, "bob")
    base, _, _ = spawn_spec(cfg, "carol-base")
    plain_again, _, _ = spawn_spec(cfg, "dave")
    for spec in (plain, plain_again):
        assert container(spec)["Image"] == "jupyter/base-notebook:notebook-6.5.4"
        assert spec["task_template"]["Placement"]["Constraints"] == ["node.role==manager"]
        assert "GenericResources" not in reservations(spec)
    assert base["task_template"]["Placement"]["Constraints"] == [
        "node.role==manager", "node.labels.calculation_type==cpu"]
    assert "GenericResources" not in reservations(base)
    # and the configuration itself is unchanged
    assert cfg.SwarmUserSpawner.image == "jupyter/base-notebook:notebook-6.5.4"
    assert cfg.SwarmUserSpawner.base_constraints == ("node.role==manager",)


def test_concurrent_spawns_do_not_share_state():
    cfg = cfg_with(**RULES)

    async def both():
        from spawner_harness import RecordingDocker
        spawners = [make_spawner(cfg, name) for name in ("erin-torch", "frank", "gina-base")]
        fakes = []
        for sp in spawners:
            fakes.append(RecordingDocker(sp.network_name))
            sp.docker = fakes[-1]
        await asyncio.gather(*(sp.start() for sp in spawners))
        return [f.created for f in fakes]

    torch, plain, base = asyncio.run(both())
    assert "GenericResources" in reservations(torch)
    assert "GenericResources" not in reservations(plain)
    assert "GenericResources" not in reservations(base)
    assert container(plain)["Image"] == "jupyter/base-notebook:notebook-6.5.4"
    assert container(base)["Image"] == "jupyter/base-notebook:notebook-6.5.4"
    assert spec_constraints(plain) == ["node.role==manager"]


def spec_constraints(spec):
    return spec["task_template"]["Placement"]["Constraints"]


@pytest.mark.parametrize("setting,visible", [("all", "all"), ("-1", "all"), ("device_id=0,3", "0,3")])
def test_visible_gpus_set_the_env_and_reserve_nothing(setting, visible):
    spec, _, _ = spawn_spec(cfg_with(SPAWNER_USE_GPUS=setting), "hank")
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == visible
    assert "GenericResources" not in reservations(spec)


def test_default_gpu_count_for_everyone():
    spec, _, _ = spawn_spec(cfg_with(SPAWNER_USE_GPUS="1"), "ivy")
    assert reservations(spec)["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]


@pytest.fixture
def share(tmp_path, monkeypatch):
    """A directory standing in for the share's root mounted in the hub: the
    hub's mount-point test says yes for it (and only for it)."""
    root = tmp_path / "share"
    root.mkdir()
    monkeypatch.setattr(SwarmUserSpawner, "_share_is_mounted",
                        staticmethod(lambda path: os.path.samefile(path, root)))
    return root


def test_nfs_volume_per_user(share):
    spec, _, _ = spawn_spec(cfg_with(
        SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3", SPAWNER_PERSISTENCE_NFS_HOST="10.0.0.10",
        SPAWNER_PERSISTENCE_NFS_DEVICE=":/nas/jupyterhub/{username}",
        SPAWNER_PERSISTENCE_NFS_OPTS=",vers=3,nolock,hard",
        SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(share),
    ), "alice-torch")
    mount = container(spec)["Mounts"][0]
    assert mount["Type"] == "volume"
    assert mount["VolumeOptions"]["DriverConfig"] == {
        "Name": "local",
        "Options": {"type": "nfs", "o": "addr=10.0.0.10,vers=3,nolock,hard",
                    "device": ":/nas/jupyterhub/alice-2dtorch"},
    }
    # NFS directories are made by the hub with the right owner: no root start
    assert "User" not in container(spec)
    assert "CHOWN_EXTRA" not in env_of(spec)


def test_cifs_volume_per_user(share):
    spec, _, _ = spawn_spec(cfg_with(
        SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs", SPAWNER_PERSISTENCE_CIFS_HOST="u1.your-server.de",
        SPAWNER_PERSISTENCE_CIFS_DEVICE="//u1.your-server.de/backup",
        SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(share),
    ), "bob")
    options = container(spec)["Mounts"][0]["VolumeOptions"]["DriverConfig"]["Options"]
    assert options == {"type": "cifs", "o": "addr=u1.your-server.de,file_mode=0777,dir_mode=0777",
                       "device": "//u1.your-server.de/backup/bob"}


def test_hub_makes_the_user_directory_on_the_share(share):
    root = share
    cfg = cfg_with(
        SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs4", SPAWNER_PERSISTENCE_NFS_HOST="h",
        SPAWNER_PERSISTENCE_NFS_DEVICE=":/export/jh/{username}/home",
        SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(root),
        SPAWNER_PERSISTENCE_VOLUME_OWNER="1234:567",
    )
    spawn_spec(cfg, "alice-torch")
    made = root / "alice-2dtorch" / "home"
    assert made.is_dir()
    assert (made.stat().st_uid, made.stat().st_gid) == (1234, 567)
    assert sorted(p.name for p in root.iterdir()) == ["alice-2dtorch"]


def test_a_share_root_above_the_device_holds_the_path_between(share):
    """SPAWNER_PERSISTENCE_NFS_ROOT=/export mounted, device /export/jh/{username}:
    the hub makes jh/<user> below the mount."""
    spawn_spec(cfg_with(
        SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3", SPAWNER_PERSISTENCE_NFS_HOST="h",
        SPAWNER_PERSISTENCE_NFS_DEVICE=":/export/jh/{username}",
        SPAWNER_PERSISTENCE_NFS_ROOT="/export",
        SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(share),
        SPAWNER_PERSISTENCE_VOLUME_OWNER=f"{os.getuid()}:{os.getgid()}",
    ), "carol")
    assert (share / "jh" / "carol").is_dir()


NFS = dict(SPAWNER_PERSISTENCE_VOLUME_TYPE="nfs3", SPAWNER_PERSISTENCE_NFS_HOST="10.0.0.10",
           SPAWNER_PERSISTENCE_NFS_DEVICE=":/nas/jupyterhub/{username}")


@pytest.mark.parametrize("kind,extra,share_name", [
    ("nfs3", NFS, "10.0.0.10:/nas/jupyterhub (SPAWNER_PERSISTENCE_NFS_ROOT)"),
    ("cifs", dict(SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs", SPAWNER_PERSISTENCE_CIFS_HOST="srv",
                  SPAWNER_PERSISTENCE_CIFS_DEVICE="//srv/share/{username}",
                  SPAWNER_PERSISTENCE_CIFS_OPTS=",username=bob,password=Sup3rS3cret"),
     "//srv/share (SPAWNER_PERSISTENCE_CIFS_ROOT)"),
])
def test_share_root_not_mounted_refuses_the_spawn(tmp_path, kind, extra, share_name):
    """An existing directory that is no mount point (the image's own, or one
    of the hub's container) is not the share: creating the user's directory
    there would not create it on the server, and docker's mount would fail
    later. The spawn fails before any service exists, saying what to do."""
    cfg = cfg_with(SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(tmp_path), **extra)
    spawner = make_spawner(cfg, "alice")
    created = []

    async def docker(method, *args, **kwargs):
        created.append(method)
        raise AssertionError(f"docker called: {method}")

    spawner.docker = docker
    with pytest.raises(SpawnFailed) as e:
        asyncio.run(spawner.start())
    message = e.value.jupyterhub_message
    assert message.startswith("Your server could not start: "), message
    assert f"SPAWNER_PERSISTENCE_VOLUME_TYPE is {kind}" in message, message
    assert f"SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH={tmp_path} is not a mount point" in message
    assert share_name in message, message
    assert f"docker-compose.{'cifs' if kind == 'cifs' else 'nfs'}.yml" in message, message
    assert "Sup3rS3cret" not in message and "username=bob" not in message
    assert created == [] and list(tmp_path.iterdir()) == []


def test_local_volumes_need_no_share(tmp_path):
    spec, _, _ = spawn_spec(cfg_with(SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(tmp_path / "no")),
                            "alice")
    assert container(spec)["Mounts"][0]["Source"] == "jupyterhub-user-alice"


def test_a_share_the_hub_cannot_write_says_what_the_export_must_allow(share, monkeypatch):
    """Root squash: the hub (root) is nobody on the server and cannot create
    the user's directory."""
    def squashed(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", squashed)
    spawner = make_spawner(cfg_with(SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH=str(share), **NFS), "dan")
    with pytest.raises(SpawnFailed) as e:
        asyncio.run(spawner.start())
    message = e.value.jupyterhub_message
    assert f"could not create {share}/dan" in message and "Permission denied" in message, message
    assert "no_root_squash" in message and "SPAWNER_PERSISTENCE_VOLUME_OWNER" in message, message


def test_long_usernames_get_valid_service_names():
    spec, _, _ = spawn_spec(cfg_with(), "u" * 70 + "-torch")
    assert len(spec["name"]) <= 63


def test_a_server_without_gpus_sees_none():
    """On a node whose default runtime is nvidia, CUDA images set
    NVIDIA_VISIBLE_DEVICES=all and would see every GPU, those swarm reserved
    for others too: a server without GPUs gets `void` (the runtime then
    exposes none). Counted GPUs: the runtime takes swarm's
    DOCKER_RESOURCE_NVIDIA-GPU, nothing set here."""
    plain, _, _ = spawn_spec(cfg_with(**RULES), "alice")
    assert env_of(plain)["NVIDIA_VISIBLE_DEVICES"] == "void"
    counted, _, _ = spawn_spec(cfg_with(**RULES), "alice-torch")
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(counted)
    everything, _, _ = spawn_spec(cfg_with(SPAWNER_USE_GPUS="all"), "alice")
    assert env_of(everything)["NVIDIA_VISIBLE_DEVICES"] == "all"

"""docker-compose.nfs.yml / .cifs.yml: the share's root mounted into the hub
at SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH, from the same variables and defaults
as the users' volumes. tests/e2e/test_19_nfs_stack.py deploys the NFS one."""

import re

import pytest
import yaml
from conftest import ROOT

import jupyterhub_config
from jupyterhub_config import DEFAULT_OPTS, STORAGE

MKDIR_DEFAULT = dict((name, default) for name, _, default, _ in STORAGE)[
    "SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH"]


def interpolate(text, env):
    """docker stack deploy's ${VAR}, ${VAR:-default}, ${VAR:?error} (enough
    for these files): the error raises KeyError naming the variable."""
    def one(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name) or ""
        if op == ":-" and not value:
            return arg
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value
    return re.sub(r"\$\{([A-Z_]+)(?:(:[-?])([^}]*))?\}", one, text)


def load(name, env):
    text = (ROOT / name).read_text()
    assert text.startswith("#") and "\nversion: " in text  # docker 20.10 needs it
    return yaml.safe_load(interpolate(text, env))


NFS_ENV = {"SPAWNER_PERSISTENCE_NFS_HOST": "10.0.0.10",
           "SPAWNER_PERSISTENCE_NFS_ROOT": "/nas/jupyterhub"}
CIFS_ENV = {"SPAWNER_PERSISTENCE_CIFS_HOST": "srv", "SPAWNER_PERSISTENCE_CIFS_ROOT": "/backup"}


@pytest.mark.parametrize("name,env,options", [
    ("docker-compose.nfs.yml", NFS_ENV,
     {"type": "nfs", "o": "addr=10.0.0.10" + DEFAULT_OPTS["nfs3"], "device": ":/nas/jupyterhub"}),
    ("docker-compose.cifs.yml", CIFS_ENV,
     {"type": "cifs", "o": "addr=srv" + DEFAULT_OPTS["cifs"], "device": "//srv/backup"}),
])
def test_the_hub_mounts_the_share_root_at_mkdirpath(name, env, options):
    stack = load(name, env)
    assert stack["services"]["jupyterhub"]["volumes"] == [f"jupyterhub-share-root:{MKDIR_DEFAULT}"]
    assert stack["volumes"]["jupyterhub-share-root"] == {"driver": "local", "driver_opts": options}
    # a changed MKDIRPATH and options follow
    kind = "NFS" if "nfs" in name else "CIFS"
    moved = load(name, dict(env, SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH="/share",
                            **{f"SPAWNER_PERSISTENCE_{kind}_OPTS": ",vers=4.1"}))
    assert moved["services"]["jupyterhub"]["volumes"] == ["jupyterhub-share-root:/share"]
    assert moved["volumes"]["jupyterhub-share-root"]["driver_opts"]["o"].endswith(",vers=4.1")


@pytest.mark.parametrize("name,env,missing", [
    ("docker-compose.nfs.yml", NFS_ENV, "SPAWNER_PERSISTENCE_NFS_ROOT"),
    ("docker-compose.nfs.yml", NFS_ENV, "SPAWNER_PERSISTENCE_NFS_HOST"),
    ("docker-compose.cifs.yml", CIFS_ENV, "SPAWNER_PERSISTENCE_CIFS_ROOT"),
    ("docker-compose.cifs.yml", CIFS_ENV, "SPAWNER_PERSISTENCE_CIFS_HOST"),
])
def test_the_files_require_the_host_and_the_root(name, env, missing):
    with pytest.raises(KeyError, match=missing):
        load(name, {k: v for k, v in env.items() if k != missing})


def test_the_files_read_only_variables_the_hub_reads_too():
    for name in ("docker-compose.nfs.yml", "docker-compose.cifs.yml"):
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / name).read_text()))
        assert used and used <= set(re.findall(r'"([A-Z][A-Z0-9_]+)"',
                                               (ROOT / "jupyterhub_config.py").read_text()))
    assert jupyterhub_config.DEFAULT_OPTS["nfs3"] in (ROOT / "docker-compose.nfs.yml").read_text()

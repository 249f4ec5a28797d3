"""Hostile input: arbitrary strings in every variable, secrets in swarm's
error messages."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets.config import Config

import jupyterhub_config
from conftest import MINIMAL_ENV, environment, load_config
from jupyterhub_config import Env, configure
from jupyterhub_swarm import ConfigError
from spawner_harness import make_spawner
from test_docs import config_variables

VARIABLES = sorted(config_variables())

# A bad value may be reported under the variable it conflicts with.
PARTNERS = {
    "PROXY_SHOULD_START": {"PROXY_API_URL", "CONFIGPROXY_AUTH_TOKEN"},
    "HUB_SSL_KEY": {"HUB_SSL_CERT"},
    "HUB_SSL_CERT": {"HUB_SSL_KEY"},
    "HUB_HUB_PORT": {"HUB_PORT"},
    "SPAWNER_PERSISTENCE_VOLUME_TYPE": {
        "SPAWNER_PERSISTENCE_NFS_HOST", "SPAWNER_PERSISTENCE_CIFS_HOST"},
    "SPAWNER_CPU_LIMIT": {"SPAWNER_CPU_GUARANTEE"},
    "SPAWNER_MEM_LIMIT": {"SPAWNER_MEM_GUARANTEE"},
    "AUTH_USERNAME_PATTERN": {"AUTH_ADMIN_USER"},
    "AUTH_MINIMUM_PASSWORD_LENGTH": {"AUTH_ADMIN_PASSWORD"},
    "SPAWNER_NOTEBOOK_DIR": {"SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME"},
}

# The plain integers of the config's tables: variable -> (section, trait).
INTEGERS = {name: tuple(trait.split(".")) for table in jupyterhub_config.TABLES
            for name, reader, _, trait in table if reader is jupyterhub_config.integer and trait}

text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1", "8001", "true", "no", "all", "{username}",
                     "a:b", "a->b", "a==b", "//h/s", ":/x", "1G", "spread:x", "amd64:linux"]),
)


@pytest.mark.parametrize("name", VARIABLES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=text)
def test_any_string_gives_a_config_or_one_error_naming_the_variable(name, value):
    env = Env(dict(MINIMAL_ENV, **{name: value}))
    try:
        with environment({}):
            cfg = configure(Config(), env)
    except SystemExit as e:
        assert isinstance(e, ConfigError), repr(e)
        assert e.variable in {name, name.removesuffix("_FILE")} | PARTNERS.get(name, set()), e.message
        assert e.code.startswith("Configuration error: ")
        return
    if name in INTEGERS and value.strip():
        section, trait = INTEGERS[name]
        assert cfg[section][trait] == int(value.strip(), 10)


def test_swarm_mount_errors_do_not_show_cifs_credentials():
    cfg = load_config(SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs", SPAWNER_PERSISTENCE_CIFS_HOST="srv",
                      SPAWNER_PERSISTENCE_CIFS_DEVICE="//srv/share",
                      SPAWNER_PERSISTENCE_CIFS_OPTS=",username=bob,password=Sup3rS3cret,vers=3.0",
                      SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH="/nonexistent")
    spawner = make_spawner(cfg, "bob")
    # what dockerd reports when the node has no CIFS client
    err = ("starting container failed: error while mounting volume '/var/lib/docker/volumes/"
           "jupyterhub-user-bob/_data': failed to mount local volume: mount //srv/share/bob:"
           "/var/lib/docker/volumes/jupyterhub-user-bob/_data, data: addr=srv,username=bob,"
           "password=Sup3rS3cret,vers=3.0: no such device")
    shown = spawner.scrub(err)
    assert "Sup3rS3cret" not in shown
    assert "no such device" in shown and "//srv/share/bob" in shown
    assert "password=***" in spawner.scrub("mount failed: password=Sup3rS3cret")

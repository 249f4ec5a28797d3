"""The README's variable reference and the stack file match the config."""

import re

from conftest import CONFIG_FILE, ROOT, environment, load_config, namespace

PREFIXES = ("PROXY_", "CONFIGPROXY_", "HUB_", "SPAWNER_", "AUTH_")


def config_variables():
    """Every variable name the config file mentions as a string literal."""
    names = re.findall(r'"([A-Z][A-Z0-9_]+)"', CONFIG_FILE.read_text())
    return {n for n in names if n.startswith(PREFIXES)}


def readme_variables(heading_from, heading_to):
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading_from):text.index(heading_to)]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, re.M)


def test_readme_table_lists_exactly_the_variables_the_config_reads():
    listed = readme_variables("## Variable reference", "## Check a configuration")
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    assert set(listed) == config_variables()


def test_every_variable_read_at_run_time_is_known(monkeypatch):
    """Catch reads that the literal scan could miss (names built at run time)."""
    seen = set()
    ns = namespace(load_config())
    env_class = ns["Env"]
    original = env_class.raw

    def recording_raw(self, name):
        seen.add(name)
        return original(self, name)

    monkeypatch.setattr(env_class, "raw", recording_raw)
    monkeypatch.setitem(ns, "running_hub", lambda: False)
    configure = ns["configure"]
    from traitlets.config import Config
    base = {"SPAWNER_NETWORK_NAME": "n"}
    for extra in ({}, {"PROXY_SHOULD_START": "false", "PROXY_API_URL": "http://p:1",
                       "CONFIGPROXY_AUTH_TOKEN": "t", "HUB_SSL_KEY": "k", "HUB_SSL_CERT": "c"},
                  {"SPAWNER_PERSISTENCE_VOLUME_TYPE": "nfs3", "SPAWNER_PERSISTENCE_NFS_HOST": "h",
                   "SPAWNER_PERSISTENCE_NFS_DEVICE": ":/x"},
                  {"SPAWNER_PERSISTENCE_VOLUME_TYPE": "cifs", "SPAWNER_PERSISTENCE_CIFS_HOST": "h",
                   "SPAWNER_PERSISTENCE_CIFS_DEVICE": "//h/x"}):
        with environment({}):
            configure(Config(), env_class(dict(base, **extra)))
    file_forms = set(ns["SECRET_FILES"].values())
    assert seen <= config_variables()
    assert seen | file_forms == config_variables(), sorted(config_variables() - seen - file_forms)


def test_stack_file_passes_every_variable_through():
    text = (ROOT / "docker-compose.swarm.yml").read_text()
    hub = text[text.index("  jupyterhub:"):text.index("\nvolumes:")]
    keys = set(re.findall(r"^      ([A-Z][A-Z0-9_]+):", hub, re.M))
    # the stack hands the proxy token to both services itself
    expected = config_variables() - {"CONFIGPROXY_AUTH_TOKEN_FILE"}
    assert expected <= keys, sorted(expected - keys)

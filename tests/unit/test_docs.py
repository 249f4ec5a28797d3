"""The variable reference (docs/reference.md, its translation
docs/zh-CN/reference.md) and the stack file match the config."""

import re

from conftest import CONFIG_FILE, ROOT, environment, load_config
from docpages import markdown_files, markdown_section, mirrored_pages, page, section
import jupyterhub_config
from jupyterhub_config import SECRET_FILES, Env, configure
from jupyterhub_swarm import Gpu

PREFIXES = ("PROXY_", "CONFIGPROXY_", "HUB_", "SPAWNER_", "AUTH_")


def config_variables():
    """Every variable name the config file mentions as a string literal."""
    names = re.findall(r'"([A-Z][A-Z0-9_]+)"', CONFIG_FILE.read_text())
    return {n for n in names if n.startswith(PREFIXES)}


def reference_variables(heading):
    """The variables of the tables under `heading` of docs/reference.md."""
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section("reference", heading), re.M)


def test_the_reference_lists_exactly_the_variables_the_config_reads():
    listed = reference_variables("## Hub variables")
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    config = config_variables()
    assert set(listed) == config, ("docs/reference.md, Hub variables: "
                                   f"missing {sorted(config - set(listed))}, "
                                   f"not read by the config {sorted(set(listed) - config)}")


def test_every_variable_read_at_run_time_is_known(monkeypatch):
    """Catch reads that the literal scan could miss (names built at run time)."""
    seen = set()
    env_class = Env
    original = env_class.raw

    def recording_raw(self, name):
        seen.add(name)
        return original(self, name)

    monkeypatch.setattr(env_class, "raw", recording_raw)
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
    file_forms = set(SECRET_FILES.values())
    assert seen <= config_variables()
    assert seen | file_forms == config_variables(), sorted(config_variables() - seen - file_forms)


def test_stack_file_passes_every_variable_through():
    text = (ROOT / "docker-compose.swarm.yml").read_text()
    hub = text[text.index("  jupyterhub:"):text.index("\nvolumes:")]
    keys = set(re.findall(r"^      ([A-Z][A-Z0-9_]+):", hub, re.M))
    expected = config_variables()
    assert expected <= keys, sorted(expected - keys)


def test_example_env_lists_every_variable_and_loads():
    lines = (ROOT / "example.env").read_text().splitlines()
    names = {m.group(1) for line in lines
             if (m := re.match(r"^#?([A-Z][A-Z0-9_]+)=", line))}
    assert names == config_variables()
    active = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    cfg = load_config(active)
    assert cfg.SwarmUserSpawner.network_name == "jupyterhub_network"


# docs/zh-CN/reference.md translates docs/reference.md: its headings differ,
# its variable tables must not. Each heading of the English reference, paired
# with its heading in the Chinese one.
ZH_REFERENCE_SECTIONS = {
    "## Hub variables": "## hub变量",
    "### Proxy": "### Proxy设置",
    "### Hub": "### HUB设置",
    "### Spawner: user servers": "### SPAWNER设置：用户服务器",
    "### Auth: NativeAuthenticator": "### AUTH设置：NativeAuthenticator",
    "### Secrets from files": "### 从文件读取机密",
    "## Deployment variables": "## 部署变量",
    "### The stack file": "### stack文件",
    "### PostgreSQL in the stack": "### stack中的PostgreSQL",
    "### Extra configuration file": "### 一个额外的配置文件",
    "### User network size": "### 用户网络的大小",
}
REFERENCE_PAGES = ("reference", "zh-CN/reference")
VARIABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|([^|\n]*)\|", re.M)


def variable_rows(text):
    """(name, default) of each table row `| `NAME` | default | ...`, in order."""
    return [(m.group(1), m.group(2).strip()) for m in VARIABLE_ROW.finditer(text)]


def test_the_chinese_reference_lists_the_same_variables():
    en, zh = page("reference"), page("zh-CN/reference")
    assert "](README.zh-CN.md)" in page("README"), "README.md does not link README.zh-CN.md"
    assert "](README.md)" in page("README.zh-CN"), "README.zh-CN.md does not link README.md"

    headings = [h for h in en.splitlines() if re.match(r"#{2,} ", h)]
    assert headings == list(ZH_REFERENCE_SECTIONS), "docs/reference.md has other headings"
    for en_heading, zh_heading in ZH_REFERENCE_SECTIONS.items():
        en_rows = variable_rows(markdown_section(en, en_heading))
        zh_rows = variable_rows(markdown_section(zh, zh_heading))
        assert en_rows, f"docs/reference.md has no variable table under {en_heading!r}"
        assert [n for n, _ in zh_rows] == [n for n, _ in en_rows], \
            f"docs/zh-CN/reference.md {zh_heading!r} lists other variables than {en_heading!r}"
        assert zh_rows == en_rows, f"defaults differ under {zh_heading!r}"
    # and no page of either language differs from its translation
    for name in mirrored_pages():
        assert variable_rows(page(f"zh-CN/{name}")) == variable_rows(page(name)), name

    config = config_variables()
    reference = [n for n, _ in variable_rows(markdown_section(en, "## Hub variables"))]
    assert set(reference) <= config, sorted(set(reference) - config)
    # deployment variables are read by the stack files, not by the config
    stacks = "".join(f.read_text() for f in sorted(ROOT.glob("docker-compose*.yml")))
    deployment = variable_rows(markdown_section(en, "## Deployment variables"))
    unknown = [n for n, _ in deployment if "${" + n + ":" not in stacks]
    assert not unknown, f"docs/reference.md lists deployment variables nothing reads: {unknown}"


def test_variable_tables_are_in_the_reference_only():
    """One place to look a variable up: no other page has a variable table."""
    for file in markdown_files():
        if file.parent.name in ("docs", "zh-CN") and file.stem == "reference":
            continue
        rows = variable_rows(file.read_text(encoding="utf-8"))
        assert not rows, f"{file.relative_to(ROOT)} has a variable table: {rows[:3]}..."


# -- defaults: written once, in the config's tables ---------------------------


def table_defaults():
    """{variable: default as the docs spell it ("" for none)} from the
    config's tables, and the per-type mount options."""
    def spelled(value):
        if value is None or value in ((), {}, Gpu()):
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, list):
            return " ".join(value)
        return str(value)

    defaults = {name: spelled(default) for table in jupyterhub_config.TABLES
                for name, _, default, _ in table}
    opts = jupyterhub_config.DEFAULT_OPTS
    defaults["SPAWNER_PERSISTENCE_NFS_OPTS"] = opts["nfs3"]  # and nfs4's, see below
    defaults["SPAWNER_PERSISTENCE_CIFS_OPTS"] = opts["cifs"]
    return defaults


def test_the_tables_cover_every_variable_with_a_default():
    documented = dict(variable_rows(section("reference", "## Hub variables")))
    with_default = {n for n, cell in documented.items() if cell.startswith("`")}
    assert with_default <= set(table_defaults()), sorted(with_default - set(table_defaults()))


def test_reference_defaults_are_the_tables_defaults():
    for doc in REFERENCE_PAGES:
        rows = dict(variable_rows(page(doc)))
        for name, default in table_defaults().items():
            cell = rows[name]
            shown = re.match(r"`([^`]*)`", cell)
            if default == "":
                assert shown is None, f"docs/{doc}.md: {name} has no default, the table says {cell!r}"
            else:
                assert shown and shown.group(1) == default, \
                    f"docs/{doc}.md: {name} default {cell!r}, the config's table says {default!r}"
        nfs = rows["SPAWNER_PERSISTENCE_NFS_OPTS"]
        assert f"`{jupyterhub_config.DEFAULT_OPTS['nfs4']}` (nfs4)" in nfs, nfs


def test_example_env_defaults_are_the_tables_defaults():
    lines = (ROOT / "example.env").read_text().splitlines()
    commented = dict(line[1:].split("=", 1) for line in lines
                     if re.match(r"^#[A-Z][A-Z0-9_]+=", line))
    for name, default in table_defaults().items():
        if name in commented:
            assert commented[name] == default, \
                f"example.env: #{name}={commented[name]}, the config's table says {default!r}"

"""Operator features: *_FILE secrets, the configuration check, admin
accounts at start-up, user names, idle culling, the database check."""

import logging

import bcrypt
import subprocess
import sys

import pytest
from conftest import CONFIG_FILE, MINIMAL_ENV, config_error, load_config, run_real_hub
from jupyterhub_swarm import check_database


# -- secrets from files -------------------------------------------------------

def test_file_form_is_read(tmp_path):
    secret = tmp_path / "db_url"
    secret.write_text("postgres://jh:pw@db/jh\n")
    cfg = load_config(HUB_DB_URL_FILE=str(secret))
    assert cfg.JupyterHub.db_url == "postgresql+psycopg2://jh:pw@db/jh"


def test_both_forms_is_an_error(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("t1")
    message = config_error(PROXY_SHOULD_START="false", PROXY_API_URL="http://p:8001",
                           CONFIGPROXY_AUTH_TOKEN="t2", CONFIGPROXY_AUTH_TOKEN_FILE=str(secret))
    assert "CONFIGPROXY_AUTH_TOKEN_FILE" in message and "not both" in message
    assert "t1" not in message and "t2" not in message


def test_unreadable_file_names_the_variable(tmp_path):
    message = config_error(AUTH_ADMIN_PASSWORD_FILE=str(tmp_path / "missing"))
    assert "AUTH_ADMIN_PASSWORD_FILE" in message and "readable file" in message


def test_file_form_satisfies_a_requirement(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("tok-from-file")
    cfg = load_config(PROXY_SHOULD_START="false", PROXY_API_URL="http://p:8001",
                      CONFIGPROXY_AUTH_TOKEN_FILE=str(secret))
    assert cfg.ConfigurableHTTPProxy.auth_token == "tok-from-file"


# -- the configuration check ----------------------------------------------------

def run_check(env, *users):
    proc = subprocess.run([sys.executable, str(CONFIG_FILE), *users], env=env,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_check_prints_values_sources_and_users(tmp_path):
    secret = tmp_path / "opts"
    secret.write_text(",username=u,password=Sup3rS3cret")
    env = dict(MINIMAL_ENV, SPAWNER_CONSTRAINTS="node.role==worker",
               SPAWNER_CONSTRAINT_IMAGES="torch:calculation_type==gpu->gpu/torch:2",
               SPAWNER_CONSTRAINT_WITH_GPUS="torch->1",
               SPAWNER_PERSISTENCE_VOLUME_TYPE="cifs", SPAWNER_PERSISTENCE_CIFS_HOST="srv",
               SPAWNER_PERSISTENCE_CIFS_DEVICE="//srv/share",
               SPAWNER_PERSISTENCE_CIFS_OPTS_FILE=str(secret),
               HUB_DB_URL="postgresql://jh:Sup3rS3cret@db/jh")
    code, out, err = run_check(env, "alice-torch", "bob")
    assert code == 0, err
    assert "Sup3rS3cret" not in out + err
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in out.splitlines() if " | " in line}
    assert rows["SPAWNER_CONSTRAINTS"] == ["node.role==worker", "env"]
    assert rows["HUB_PORT"] == ["8000", "default"]
    assert rows["SPAWNER_PERSISTENCE_CIFS_OPTS"] == ["<hidden>", f"file {secret}"]
    assert rows["HUB_DB_URL"] == ["postgresql://jh:***@db/jh", "env"]
    alice = out.split("user alice-torch:")[1].split("user bob:")[0]
    assert "image: gpu/torch:2" in alice
    assert "constraints: node.role==worker, node.labels.calculation_type==gpu" in alice
    assert "gpus: 1 x NVIDIA-GPU" in alice
    assert "device=//srv/share/alice-2dtorch" in alice
    bob = out.split("user bob:")[1]
    assert "constraints: node.role==worker\n" in bob
    assert "gpus: none" in bob


def test_check_fails_like_the_hub():
    code, out, err = run_check(dict(MINIMAL_ENV, SPAWNER_MEM_LIMIT="lots"))
    assert code == 1
    assert "Configuration error: SPAWNER_MEM_LIMIT='lots' is invalid" in err


# -- user names -------------------------------------------------------------------

@pytest.mark.parametrize("name,ok", [
    ("alice", True), ("alice-torch", True), ("a.b_c-1", True), ("x" * 32, True),
    ("../x", False), ("a/b", False), ("..", False), ("a b", False), ("ünï", False),
    ("x" * 33, False), ("-lead", False), ("", False),
])
def test_default_username_rule(name, ok):
    """As the hub checks it: Authenticator.validate_username (re.match)."""
    from jupyterhub.auth import Authenticator
    cfg = load_config()
    auth = Authenticator(config=cfg)
    assert auth.validate_username(name) is ok


def test_admin_names_must_match_the_rule():
    assert "AUTH_ADMIN_USER" in config_error(AUTH_ADMIN_USER="admin,bad name")


def test_admin_password_too_short():
    message = config_error(AUTH_ADMIN_PASSWORD="abc")
    assert "AUTH_ADMIN_PASSWORD" in message and "abc" not in message


# -- admin accounts at start-up ---------------------------------------------------

def make_authenticator(cfg):
    from jupyterhub import orm
    db = orm.new_session_factory("sqlite://")()
    cls = cfg.JupyterHub.authenticator_class
    log = logging.getLogger("test-authenticator")
    return cls, db, lambda: cls(config=cfg, _deprecated_db_session=db, log=log)


def test_admin_accounts_are_created_approved_and_reset(caplog):
    cfg = load_config(AUTH_ADMIN_USER="admin,boss", AUTH_ADMIN_PASSWORD="correct horse")
    cls, db, new = make_authenticator(cfg)
    auth = new()
    for name in ("admin", "boss"):
        info = auth.get_user(name)
        assert info.is_authorized and info.is_valid_password("correct horse")
    # a squatter's password is replaced at the next start
    auth.get_user("admin").password = bcrypt.hashpw(b"squatter", bcrypt.gensalt(4))
    db.commit()
    cfg.SwarmNativeAuthenticator.admin_password = "battery staple"
    again = new()
    assert again.get_user("admin").is_valid_password("battery staple")


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def read_generated(path):
    """{name: password} from the generated-password file."""
    lines = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return {name: password for name, password in lines}


def test_without_admin_password_missing_admins_get_a_generated_one(tmp_path):
    """Nobody can sign up as an admin: the account exists from the first
    start, its password in a file only the hub can read; the log names the
    file, never the password."""
    handler = ListHandler()
    logging.getLogger("test-authenticator").addHandler(handler)
    path = tmp_path / "admin_password"
    cfg = load_config(AUTH_ADMIN_USER="admin,boss")
    cfg.SwarmNativeAuthenticator.admin_password_file = str(path)
    try:
        _, db, new = make_authenticator(cfg)
        auth = new()
    finally:
        logging.getLogger("test-authenticator").removeHandler(handler)
    generated = read_generated(path)
    assert sorted(generated) == ["admin", "boss"]
    assert len(set(generated.values())) == 2 and all(len(p) >= 20 for p in generated.values())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for name, password in generated.items():
        info = auth.get_user(name)
        assert info.is_authorized and info.is_valid_password(password)
        # sign-up under an admin name finds it taken
        assert auth.create_user(name, "another-password-123") is None
    log = "\n".join(handler.lines)
    assert str(path) in log, log
    assert not [p for p in generated.values() if p in log], "a generated password is in the log"


def test_existing_admin_accounts_are_never_touched(tmp_path):
    path = tmp_path / "admin_password"
    cfg = load_config(AUTH_ADMIN_USER="admin,boss")
    cfg.SwarmNativeAuthenticator.admin_password_file = str(path)
    _, db, new = make_authenticator(cfg)
    first = new()
    before = read_generated(path)
    first.get_user("admin").password = bcrypt.hashpw(b"changed by the admin", bcrypt.gensalt(4))
    db.commit()
    cfg.Authenticator.admin_users = {"admin", "boss", "chief"}  # a new admin name
    again = new()
    assert again.get_user("admin").is_valid_password("changed by the admin")
    assert again.get_user("boss").is_valid_password(before["boss"])
    after = read_generated(path)
    assert sorted(after) == ["admin", "boss", "chief"]  # appended, the others as before
    assert {k: after[k] for k in before} == before
    assert again.get_user("chief").is_valid_password(after["chief"])


def test_an_unwritable_file_still_creates_the_accounts(tmp_path):
    """No password to read, but the name cannot be claimed either:
    AUTH_ADMIN_PASSWORD sets one later."""
    cfg = load_config()
    cfg.SwarmNativeAuthenticator.admin_password_file = str(tmp_path / "missing" / "file")
    _, _, new = make_authenticator(cfg)
    auth = new()
    assert auth.get_user("admin").is_authorized
    assert auth.create_user("admin", "squatter-password-1") is None


# -- idle culling ---------------------------------------------------------------------

def test_culler_is_off_by_default():
    assert "services" not in load_config().JupyterHub


def test_culler_service_and_role():
    hub = load_config(HUB_CULL_IDLE_TIMEOUT="600", HUB_CULL_EVERY="60",
                      HUB_CULL_MAX_AGE="86400").JupyterHub
    (service,) = hub.services
    assert service["name"] == "idle-culler"
    assert service["command"][1:] == ["-m", "jupyterhub_idle_culler", "--timeout=600",
                                      "--url=http://127.0.0.1:8001/hub/api",
                                      "--cull-every=60", "--max-age=86400"]
    (role,) = hub.load_roles
    assert role["services"] == ["idle-culler"]
    assert {"list:users", "read:users:activity", "read:servers", "delete:servers"} <= set(role["scopes"])


# -- the database check ------------------------------------------------------------

def test_old_schema_stops_the_hub_until_upgrade_is_allowed(tmp_path):
    from sqlalchemy import create_engine, text
    from jupyterhub import orm
    url = f"sqlite:///{tmp_path}/jh.sqlite"
    orm.new_session_factory(url)  # a current database
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '3c2384c5aae1'"))
    engine.dispose()
    with pytest.raises(SystemExit) as info:
        check_database(url, upgrade=False)
    assert "HUB_UPGRADE_DB=true" in str(info.value.code)
    check_database(url, upgrade=True)  # allowed: the hub upgrades it


def test_unreachable_database_names_the_variable_and_masks_the_password():
    with pytest.raises(SystemExit) as info:
        check_database("postgresql+psycopg2://jh:Sup3rS3cret@127.0.0.1:9/jh",
                             upgrade=False, wait=0)
    message = str(info.value.code)
    assert "HUB_DB_URL='postgresql+psycopg2://jh:***@127.0.0.1:9/jh'" in message
    assert "cannot connect" in message and "Sup3rS3cret" not in message


def test_bad_setting_is_reported_before_the_database_is_contacted(tmp_path):
    """The real `jupyterhub` with an unreachable database and a bad SPAWNER_*
    value: the hub names the bad value at once, rather than first waiting
    for the database and then blaming it."""
    status, output = run_real_hub(tmp_path, SPAWNER_USE_GPUS="seven")
    assert status != 0
    assert "SPAWNER_USE_GPUS='seven' is invalid" in output
    assert "waiting up to" not in output and "cannot connect" not in output

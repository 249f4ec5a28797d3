"""jupyterhub_config.py loaded through JupyterHub's own config loader."""

import pytest
from conftest import config_error, load_config


def test_defaults_follow_the_spec():
    cfg = load_config()
    hub = cfg.JupyterHub
    assert hub.port == 8000
    assert hub.hub_port == 8001 and hub.hub_ip == "0.0.0.0"
    assert hub.hub_connect_ip == "jupyterhub"
    assert hub.cookie_secret_file == "/data/jupyterhub_cookie_secret"
    assert hub.db_url == "sqlite:////data/jupyterhub.sqlite"
    assert (hub.active_server_limit, hub.active_user_window, hub.activity_resolution,
            hub.concurrent_spawn_limit, hub.init_spawners_timeout) == (100, 1800, 30, 20, 60)
    assert "internal_ssl" not in hub and "ssl_key" not in hub
    assert hub.cleanup_servers is False
    sp = cfg.SwarmUserSpawner
    assert sp.image == "jupyter/base-notebook:notebook-6.5.4"
    assert sp.pull_policy == "ifnotpresent"
    assert sp.network_name == "jupyterhub_network"
    assert sp.notebook_dir == "/home/jovyan/work"
    assert (sp.cpu_limit, sp.cpu_guarantee) == (2.0, 1.0)
    assert (sp.mem_limit, sp.mem_guarantee) == (4 * 1024**3, 1024**3)
    assert sp.environment == {} and sp.extra_endpoint_spec == {}
    assert sp.cmd == ["start-singleuser.sh"]
    assert sp.debug is True
    assert (sp.consecutive_failure_limit, sp.poll_interval, sp.start_timeout) == (0, 30, 120)
    assert sp.use_internal_ip is True
    auth = cfg.SwarmNativeAuthenticator
    assert cfg.Authenticator.admin_users == {"admin"}
    assert cfg.Authenticator.allow_all is True
    assert auth.check_common_password is False
    assert (auth.minimum_password_length, auth.allowed_failed_logins,
            auth.seconds_before_next_try) == (6, 3, 1200)
    assert (auth.enable_signup, auth.open_signup) == (True, False)


def test_builtin_proxy_api_does_not_collide_with_the_hub_port():
    cfg = load_config()
    proxy = cfg.ConfigurableHTTPProxy
    assert "should_start" not in proxy  # JupyterHub's default: True
    api_port = int(proxy.api_url.rsplit(":", 1)[1])
    assert api_port != cfg.JupyterHub.hub_port
    assert api_port != cfg.JupyterHub.port


def test_external_proxy():
    cfg = load_config(PROXY_SHOULD_START="False", PROXY_API_URL="http://proxy:8001",
                      CONFIGPROXY_AUTH_TOKEN="tok")
    proxy = cfg.ConfigurableHTTPProxy
    assert proxy.should_start is False
    assert proxy.api_url == "http://proxy:8001"
    assert proxy.auth_token == "tok"


def test_every_setting_reaches_its_trait():
    cfg = load_config(
        SPAWNER_NETWORK_NAME="net", HUB_HUB_PORT="9001", HUB_CONNECT_IP="hub.internal",
        HUB_PORT="9000", HUB_SSL_KEY="/k.pem", HUB_SSL_CERT="/c.pem",
        HUB_COOKIE_SECRET_FILE="/s/secret", HUB_DB_URL="postgres://jh:pw@db/jh",
        HUB_ACTIVE_SERVER_LIMIT="5", HUB_ACTIVE_USER_WINDOW="60", HUB_ACTIVITY_RESOLUTION="7",
        HUB_CONCURRENT_SPAWN_LIMIT="3", HUB_INTERNAL_SSL_PATH="/internal",
        HUB_INIT_SPAWNERS_TIMEOUT="9", SPAWNER_NOTEBOOK_IMAGE="reg:5000/nb:1",
        SPAWNER_PULL_POLICY="Always", SPAWNER_NOTEBOOK_DIR="/home/me",
        SPAWNER_CPU_LIMIT="1.5", SPAWNER_CPU_GUARANTEE="0.25", SPAWNER_MEM_LIMIT="2G",
        SPAWNER_MEM_GUARANTEE="256M", SPAWNER_ENVIRONMENT="A:1;B:x:y",
        SPAWNER_ENDPOINT_MODE="dnsrr", SPAWNER_SPAWN_CMD="start.sh jupyter lab",
        SPAWNER_DEBUG="no", SPAWNER_CONSECUTIVE_FAILURE_LIMIT="4", SPAWNER_POLL_INTERVAL="11",
        SPAWNER_START_TIMEOUT="300", AUTH_ADMIN_USER="root, boss", AUTH_CHECK_COMMON_PASSWORD="yes",
        AUTH_MINIMUM_PASSWORD_LENGTH="12", AUTH_ALLOWED_FAILED_LOGINS="5",
        AUTH_SECONDS_BEFORE_NEXT_TRY="60", AUTH_ENABLE_SIGNUP="off", AUTH_OPEN_SIGNUP="on",
    )
    hub = cfg.JupyterHub
    assert (hub.hub_port, hub.hub_connect_ip, hub.port) == (9001, "hub.internal", 9000)
    assert (hub.ssl_key, hub.ssl_cert) == ("/k.pem", "/c.pem")
    assert hub.cookie_secret_file == "/s/secret"
    assert hub.db_url == "postgresql+psycopg2://jh:pw@db/jh"
    assert (hub.active_server_limit, hub.active_user_window, hub.activity_resolution,
            hub.concurrent_spawn_limit, hub.init_spawners_timeout) == (5, 60, 7, 3, 9)
    assert hub.internal_ssl is True and hub.internal_certs_location == "/internal"
    sp = cfg.SwarmUserSpawner
    assert sp.image == "reg:5000/nb:1" and sp.pull_policy == "always"
    assert sp.network_name == "net" and sp.notebook_dir == "/home/me"
    assert (sp.cpu_limit, sp.cpu_guarantee) == (1.5, 0.25)
    assert (sp.mem_limit, sp.mem_guarantee) == (2 * 1024**3, 256 * 1024**2)
    assert sp.environment == {"A": "1", "B": "x:y"}
    assert sp.extra_endpoint_spec == {"mode": "dnsrr"}
    assert sp.cmd == ["start.sh", "jupyter", "lab"]
    assert sp.debug is False
    assert (sp.consecutive_failure_limit, sp.poll_interval, sp.start_timeout) == (4, 11, 300)
    assert cfg.Authenticator.admin_users == {"root", "boss"}
    auth = cfg.SwarmNativeAuthenticator
    assert auth.check_common_password is True
    assert (auth.minimum_password_length, auth.allowed_failed_logins,
            auth.seconds_before_next_try) == (12, 5, 60)
    assert (auth.enable_signup, auth.open_signup) == (False, True)


@pytest.mark.parametrize("word,value", [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("ON", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_booleans(word, value):
    assert load_config(AUTH_OPEN_SIGNUP=word).SwarmNativeAuthenticator.open_signup is value


def test_empty_values_mean_default():
    cfg = load_config(HUB_PORT="", SPAWNER_DEBUG=" ", AUTH_ADMIN_USER="")
    assert cfg.JupyterHub.port == 8000
    assert cfg.SwarmUserSpawner.debug is True
    assert cfg.Authenticator.admin_users == {"admin"}


def test_zero_limits_mean_unlimited():
    sp = load_config(SPAWNER_CPU_LIMIT="0", SPAWNER_CPU_GUARANTEE="0",
                     SPAWNER_MEM_LIMIT="0", SPAWNER_MEM_GUARANTEE="0").SwarmUserSpawner
    assert (sp.cpu_limit, sp.cpu_guarantee, sp.mem_limit, sp.mem_guarantee) == (None,) * 4


BAD_INPUT = [
    # (variables, the variable the message must name, text of the accepted forms)
    ({"HUB_PORT": "eighty"}, "HUB_PORT", "integer"),
    ({"HUB_HUB_PORT": "70000"}, "HUB_HUB_PORT", "1 to 65535"),
    ({"HUB_PORT": "8001"}, "HUB_PORT", "8081"),
    ({"HUB_PORT": "8081"}, "HUB_PORT", "8001"),
    ({"HUB_PORT": "9001", "HUB_HUB_PORT": "9001"}, "HUB_PORT", "HUB_HUB_PORT"),
    ({"HUB_HUB_PORT": "8081"}, "HUB_HUB_PORT", "8081"),
    ({"HUB_ACTIVE_SERVER_LIMIT": "lots"}, "HUB_ACTIVE_SERVER_LIMIT", "integer"),
    ({"HUB_ACTIVE_USER_WINDOW": "-5"}, "HUB_ACTIVE_USER_WINDOW", ">= 0"),
    ({"SPAWNER_START_TIMEOUT": "2m"}, "SPAWNER_START_TIMEOUT", "integer"),
    ({"SPAWNER_CPU_LIMIT": "two"}, "SPAWNER_CPU_LIMIT", "number"),
    ({"SPAWNER_CPU_GUARANTEE": "3"}, "SPAWNER_CPU_GUARANTEE", "SPAWNER_CPU_LIMIT"),
    ({"SPAWNER_MEM_LIMIT": "4 gigs"}, "SPAWNER_MEM_LIMIT", "512M"),
    ({"SPAWNER_MEM_GUARANTEE": "8G"}, "SPAWNER_MEM_GUARANTEE", "SPAWNER_MEM_LIMIT"),
    ({"SPAWNER_PULL_POLICY": "sometimes"}, "SPAWNER_PULL_POLICY", "ifnotpresent, always, never, skip"),
    ({"SPAWNER_ENDPOINT_MODE": "ingress"}, "SPAWNER_ENDPOINT_MODE", "vip, dnsrr"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "smb"}, "SPAWNER_PERSISTENCE_VOLUME_TYPE", "local, nfs3, nfs4, cifs"),
    ({"SPAWNER_DEBUG": "maybe"}, "SPAWNER_DEBUG", "true/false"),
    ({"PROXY_SHOULD_START": "nope"}, "PROXY_SHOULD_START", "true/false"),
    ({"HUB_SSL_KEY": "/k.pem"}, "HUB_SSL_CERT", "HUB_SSL_KEY"),
    ({"HUB_SSL_CERT": "/c.pem"}, "HUB_SSL_KEY", "HUB_SSL_CERT"),
    ({"PROXY_SHOULD_START": "false", "CONFIGPROXY_AUTH_TOKEN": "t"}, "PROXY_API_URL", "PROXY_SHOULD_START"),
    ({"PROXY_SHOULD_START": "false", "PROXY_API_URL": "http://p:8001"}, "CONFIGPROXY_AUTH_TOKEN", "PROXY_SHOULD_START"),
    ({"PROXY_SHOULD_START": "0", "PROXY_API_URL": "proxy:8001", "CONFIGPROXY_AUTH_TOKEN": "t"}, "PROXY_API_URL", "http"),
    ({"SPAWNER_NETWORK_NAME": ""}, "SPAWNER_NETWORK_NAME", "network"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "nfs3"}, "SPAWNER_PERSISTENCE_NFS_HOST", "nfs3"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "nfs4", "SPAWNER_PERSISTENCE_NFS_HOST": "h"}, "SPAWNER_PERSISTENCE_NFS_DEVICE", "nfs4"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "cifs"}, "SPAWNER_PERSISTENCE_CIFS_HOST", "cifs"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "cifs", "SPAWNER_PERSISTENCE_CIFS_HOST": "h"}, "SPAWNER_PERSISTENCE_CIFS_DEVICE", "cifs"),
    ({"SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME": "vol-{user}"}, "SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", "{username}"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH": "persist"}, "SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH", "/"),
    ({"SPAWNER_ENVIRONMENT": "A=1"}, "SPAWNER_ENVIRONMENT", "NAME:value"),
    ({"SPAWNER_USE_GPUS": "some"}, "SPAWNER_USE_GPUS", "device_id"),
    ({"SPAWNER_CONSTRAINTS": "node.role=manager"}, "SPAWNER_CONSTRAINTS", "key==value"),
    ({"SPAWNER_PREFERENCE": "zone"}, "SPAWNER_PREFERENCE", "spread:"),
    ({"SPAWNER_PLATFORM": "amd64"}, "SPAWNER_PLATFORM", "arch:os"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "torch"}, "SPAWNER_CONSTRAINT_IMAGES", "->image"),
    ({"SPAWNER_CONSTRAINT_WITH_GPUS": "torch->1"}, "SPAWNER_CONSTRAINT_WITH_GPUS", "SPAWNER_CONSTRAINT_IMAGES"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "a->i", "SPAWNER_CONSTRAINT_WITH_GPUS": "a->x"}, "SPAWNER_CONSTRAINT_WITH_GPUS", "device_id"),
    ({"SPAWNER_SPAWN_CMD": "start.sh 'unclosed"}, "SPAWNER_SPAWN_CMD", "command"),
    ({"HUB_DB_URL": "oracle://u:pw@db/x"}, "HUB_DB_URL", "postgresql://"),
    ({"AUTH_MINIMUM_PASSWORD_LENGTH": "six"}, "AUTH_MINIMUM_PASSWORD_LENGTH", "integer"),
    ({"AUTH_ENABLE_SIGNUP": "y"}, "AUTH_ENABLE_SIGNUP", "yes/no"),
]


@pytest.mark.parametrize("env,variable,accepted", BAD_INPUT, ids=[b[1] + "=" + repr(b[0]) for b in BAD_INPUT])
def test_bad_input_names_variable_value_and_accepted_forms(env, variable, accepted):
    message = config_error(**env)
    assert variable in message
    assert accepted in message
    value = env.get(variable)
    if value and variable != "HUB_DB_URL":
        assert value in message


def test_bad_db_url_is_shown_with_its_password_masked():
    message = config_error(HUB_DB_URL="oracle://jh:pw123@db/x")
    assert "HUB_DB_URL='oracle://jh:***@db/x'" in message
    assert "pw123" not in message


SECRETS = [
    ({"HUB_DB_URL": "oracle://jh:Sup3rS3cret@db/x"}, "Sup3rS3cret"),
    ({"PROXY_SHOULD_START": "false", "CONFIGPROXY_AUTH_TOKEN": "Sup3rS3cret"}, "Sup3rS3cret"),
    ({"SPAWNER_PERSISTENCE_VOLUME_TYPE": "cifs", "SPAWNER_PERSISTENCE_CIFS_HOST": "h",
      "SPAWNER_PERSISTENCE_CIFS_DEVICE": "//h/s/{nope}",
      "SPAWNER_PERSISTENCE_CIFS_OPTS": ",password=Sup3rS3cret"}, "Sup3rS3cret"),
]


@pytest.mark.parametrize("env,secret", SECRETS)
def test_errors_do_not_show_secrets(env, secret):
    assert secret not in config_error(**env)


def test_hub_exits_before_serving_on_bad_input(tmp_path):
    """The real `jupyterhub` command with a bad variable: status 1, one clear line."""
    import os
    import subprocess

    from conftest import CONFIG_FILE, jupyterhub_command
    jupyterhub = jupyterhub_command()
    env = {"PATH": os.environ["PATH"], "SPAWNER_NETWORK_NAME": "n", "HUB_PORT": "eighty",
           "HUB_DB_URL": f"sqlite:///{tmp_path}/jh.sqlite",
           "HUB_COOKIE_SECRET_FILE": f"{tmp_path}/secret"}
    proc = subprocess.run([jupyterhub, "-f", str(CONFIG_FILE)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Configuration error: HUB_PORT='eighty' is invalid: expected an integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "jh.sqlite").exists()

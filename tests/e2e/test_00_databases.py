"""The hub database for real: SQLite on the stack's /data volume, and the
host's PostgreSQL 15 and MariaDB (scripts/db-up.sh), which the hub, a swarm
service of the project's stack, reaches over TCP at the host's docker_gwbridge
address. Every deployment serves several checks:

- test_nothing_lost_across_hub_restarts[sqlite|postgresql|mariadb]: sign-up,
  approval, logins and a running server; then `docker service update --force`
  of the hub, then `docker kill` of its container. After each: old cookies
  still valid, the same server still known and reachable, every user there
  with the same password and approval, nothing duplicated (hub API, the
  users_info/users tables, one service), no database password in the logs.
- test_url_forms: postgres://, mysql+pymysql:// and mariadb:// deployments
  (postgresql:// and mysql:// are the lifecycle's); the last one finds the
  admin the previous deployment signed up: the data is in the database.
- test_unusable_database_stops_hub: a wrong password (PostgreSQL, MariaDB)
  or the right one pasted without percent-encoding stops the hub at once, an
  unresolvable host after the 30 s wait: non-zero exit, a message naming
  HUB_DB_URL with the password masked, no piece of a password in the logs.
- test_upgrade_from_earlier_image[4.0.2|5.5.4-sqlite|postgresql|mariadb]: a
  database made by JupyterHub 4.0.2 + NativeAuthenticator 1.2.0 (the original
  image's generation) or by JupyterHub 5.5.4 + NativeAuthenticator 1.3.0 (this
  project's previous image's) stops the hub with a message saying to set
  HUB_UPGRADE_DB=true; the same deploy command with it upgrades the schema
  (SQLite: a backup next to the file first) and every account keeps its
  password and approval, every API token still works.
- test_compose_postgres: docker-compose.swarm.yml + docker-compose.postgres.yml
  (a postgres service, docker secrets for its password and for HUB_DB_URL_FILE):
  the hub uses it, the password appears nowhere, a database restart loses
  nothing.

Named test_00 on purpose: these tests deploy stacks of their own (deploy()
replaces whatever runs), so they run before the modules sharing the
session's `hub` deployment instead of pulling it from under them.
"""

import json
import os
import secrets
import sqlite3
import subprocess
import time
from urllib.parse import quote

import pytest
import requests

from . import dbservers, swarm
from .conftest import (
    NOTEBOOK_IMAGE, PASSWORD, PROJECT_IMAGE, PROXY_IMAGE, SETTINGS, SINGLEUSER_IMAGES, USE_REAL,
    Deployment,
    check_interpolation, deploy, observe, phase,
)
from .hubclient import start_and_wait
from .swarm import log, wait_for

ADMIN = "admin"
RUNNER = "dbrunner"  # approved, has a running server
IDLE = "dbidle"  # approved, no server
PENDING = "dbpending"  # signed up, never approved
SERVICE = "jupyter-dbrunner"
POSTGRES_VOLUME = f"{swarm.STACK}_jupyterhub-postgres"
POSTGRES_SERVICE = f"{swarm.STACK}_postgres"
COMPOSE_POSTGRES = swarm.ROOT / "docker-compose.postgres.yml"
# the schema revisions of JupyterHub 4.0.x, of 5.5.x and of the pinned 6.1.1
REVISION_4_0 = "0eee8c825d24"
REVISION_5_5 = "4621fec11365"
REVISION_6_1 = "f460b0348206"
EARLIER = {"4.0.2": REVISION_4_0, "5.5.4": REVISION_5_5}
WRONG_PASSWORD = "Wr0ng@pass%word"
# These tests log in afresh to a server that was running before the hub
# restarted: a jupyterhub-singleuser 6.x server cannot reach a restarted hub
# for up to 10 minutes (its DNS cache, test_05_hub_restart.py), so the
# running server has a 5.x image, as the servers of the 5.5.4 era had.
RESTART_PROOF_NOTEBOOK = SINGLEUSER_IMAGES.get("5.5") or NOTEBOOK_IMAGE or None
SCHEMES = {"postgresql": "postgresql", "mariadb": "mysql"}  # the lifecycle's URL forms


@pytest.fixture(scope="module")
def dbs(e2e_env):
    with phase("databases: db-up.sh"):
        dbservers.ensure_up()
    yield dbservers.Servers()
    with phase("databases: teardown"):
        swarm.cleanup()
        swarm.docker("volume", "rm", POSTGRES_VOLUME, check=False)
        Deployment.current = None


def assert_no_secrets(text, dbs, *more, where="hub logs"):
    for secret in [*dbs.secrets(), *more]:
        assert secret not in text, f"a database password appears in the {where}"


def db_url(dbs, kind, db, scheme=None):
    """HUB_DB_URL for a lifecycle/upgrade deployment (None: the default SQLite)."""
    if kind == "sqlite":
        return None
    return dbs.url(kind, scheme or SCHEMES[kind], db)


# -- helpers for deployments that are expected to fail, or are updated in place --


def stack_env(**overrides):
    """The variables deploy() would use, for deploying by hand."""
    env = {
        "JUPYTERHUB_IMAGE": PROJECT_IMAGE,
        "PROXY_IMAGE": PROXY_IMAGE,
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
        "PUBLIC_PORT": swarm.free_port(18000),
        "SPAWNER_NOTEBOOK_IMAGE": NOTEBOOK_IMAGE or None,
        **SETTINGS,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def stack_deploy(env, *extra_files, compose=swarm.COMPOSE_FILE):
    """`docker stack deploy` of `compose` (the stack file; an earlier
    release's for the upgrade test) and `extra_files` with `env`."""
    files = [compose, *extra_files]
    args = ["stack", "deploy", "--resolve-image", "never"]
    for f in files:
        args += ["-c", str(f)]
    swarm.docker(*args, swarm.STACK, env=swarm.deploy_env(env), cwd=str(os.path.dirname(compose)))
    d = Deployment(env["PUBLIC_PORT"], env)
    Deployment.current = d
    return d


def hub_task_ids():
    return {t["ID"] for t in swarm.service_tasks(swarm.HUB_SERVICE)}


def failed_hub_task(known=(), timeout=90):
    """The first hub task, not in `known`, that failed: (task, its logs)."""

    def failed():
        for task in swarm.service_tasks(swarm.HUB_SERVICE):
            if task["ID"] not in known and task["Status"]["State"] in ("failed", "rejected"):
                return task
        return None

    task = wait_for(failed, timeout, "a hub task to fail", interval=1)
    container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
    assert container, f"the failed hub task has no container: {task['Status']}"
    proc = swarm.docker("logs", container, check=False)
    return task, proc.stdout + proc.stderr


def task_runtime(task):
    """Seconds the task's container ran (docker inspect of the container)."""
    from datetime import datetime

    container = task["Status"]["ContainerStatus"]["ContainerID"]
    state = swarm.docker_json("inspect", container)[0]["State"]

    def parse(text):  # 2026-01-01T00:00:00.123456789Z
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")

    return (parse(state["FinishedAt"]) - parse(state["StartedAt"])).total_seconds()


def wait_healthy_after(d, known, timeout=180):
    """Like Deployment.wait_healthy, but only tasks not in `known` count as
    failures (an in-place redeploy keeps the earlier failed tasks)."""

    def healthy():
        if d.health():
            return True
        failed = [t for t in swarm.service_tasks(swarm.HUB_SERVICE)
                  if t["ID"] not in known and t["Status"]["State"] in ("failed", "rejected")]
        if len(failed) >= 2:
            raise AssertionError(f"the hub failed {len(failed)} times: "
                                 f"{[t['Status'].get('Err') for t in failed]}\n{swarm.hub_logs(60)}")
        return False

    wait_for(healthy, timeout, "the hub healthy through the proxy", 1)


# -- 1 + 2: accounts, a server, and two kinds of hub restart -----------------------


def server_ready(client, name):
    model = client.user_model(name)
    return model if model["servers"].get("", {}).get("ready") else None


def wait_new_hub(d, old_container):
    """A new hub container, healthy, that has loaded the running server
    (watched by a fresh admin login: the old cookies are checked later)."""
    def new_hub():
        current = swarm.hub_container()
        return current if current and current != old_container else None

    new = wait_for(new_hub, 120, "a new hub container")
    log(f"hub container {old_container[:12]} -> {new[:12]}")
    d.wait_healthy(180)
    watcher = d.client()
    assert watcher.login(ADMIN, PASSWORD).ok, "the admin cannot log in to the new hub"
    wait_for(lambda: server_ready(watcher, RUNNER), 60, f"the new hub to report {RUNNER}'s server ready")


def check_nothing_lost(d, dbs, kind, db, admin, runner, before, when):
    with phase(f"databases {kind}: nothing lost {when}"):
        # cookies signed before the restart are still valid (same cookie secret)
        me = admin.api("GET", "/user")
        assert me.status_code == 200, f"{when}: the admin's old cookie: HTTP {me.status_code}"
        assert me.json()["name"] == ADMIN and me.json()["admin"] is True, me.json()
        assert runner.api("GET", "/user").json()["name"] == RUNNER
        # the same server: still known, reachable with the old cookies, one service
        assert server_ready(admin, RUNNER), f"{when}: {admin.user_model(RUNNER)}"
        assert runner.server_status()["started"] == before["started"]
        assert swarm.service_inspect(SERVICE)["ID"] == before["service"]
        assert swarm.running_task(SERVICE)["ID"] == before["task"]
        assert swarm.user_services() == [SERVICE], swarm.user_services()
        # every user: same password, same approval
        for name in (ADMIN, RUNNER, IDLE):
            result = d.client().login(name, PASSWORD)
            assert result.ok, f"{when}: login of {name}: {result}"
        fresh = d.client()
        assert fresh.login(RUNNER, PASSWORD).ok
        fresh.open_server(RUNNER)  # a fresh login reaches the server too
        assert fresh.server_status(RUNNER)["started"] == before["started"]
        refused = d.client().login(PENDING, PASSWORD)
        assert not refused.ok and "has not been authorized" in refused.error, (when, refused)
        wrong = d.client().login(IDLE, PASSWORD + "x")
        assert not wrong.ok and "Invalid username or password" in wrong.error, (when, wrong)
        # nothing duplicated: hub API and the tables behind it
        users = admin.api("GET", "/users").json()
        assert sorted(u["name"] for u in users) == sorted([ADMIN, RUNNER, IDLE]), users
        assert {u["name"]: u["admin"] for u in users} == {ADMIN: True, RUNNER: False, IDLE: False}
        info = dbs.rows(kind, db, "SELECT username, is_authorized FROM users_info ORDER BY username")
        assert [(n, dbservers.truthy(a)) for n, a in info] == [
            (ADMIN, True), (IDLE, True), (PENDING, False), (RUNNER, True)], info
        names = dbs.rows(kind, db, "SELECT name FROM users ORDER BY name")
        assert names == [(ADMIN,), (IDLE,), (RUNNER,)], names
        assert_no_secrets(swarm.hub_logs(5000), dbs)


# how long the database server is stopped while the hub runs (issue: 3 min)
OUTAGE = int(os.environ.get("JHSWARM_DB_OUTAGE_SECONDS", "180"))


def database_outage(d, dbs, kind, admin):
    """Stop the database server for OUTAGE seconds under a running hub with a
    running server; print what the hub did meanwhile and how long it took
    to serve again once the database was back."""
    hub_tasks = hub_task_ids()
    with phase(f"databases {kind}: the server stopped for {OUTAGE}s"):
        dbs.stop(kind)
        try:
            health, t0 = [], time.monotonic()
            while time.monotonic() - t0 < OUTAGE:
                health.append(d.health())
                time.sleep(5)
            replaced = hub_task_ids() - hub_tasks
            observe(f"databases {kind}: during the {OUTAGE}s outage /hub/health answered "
                    f"{sum(health)}/{len(health)} times; hub tasks started meanwhile: {len(replaced)}")
        finally:
            dbs.start(kind)
    with phase(f"databases {kind}: the hub serves again by itself"):
        t0 = time.monotonic()
        wait_for(lambda: d.client().login(ADMIN, PASSWORD).ok, 240,
                 f"a login once {kind} is back", interval=1)
        observe(f"databases {kind}: logins work {time.monotonic() - t0:.1f}s after the server is back")
        # said once when it went, once when it was back (watch_database,
        # which looks every 10 s)
        def said(what):
            return [line for line in swarm.hub_logs(5000).splitlines()
                    if "The hub's database" in line and what in line]

        wait_for(lambda: said("answers again"), 60, "the hub's log to say the database is back")
        down, back = said("does not answer"), said("answers again")
        observe(f"databases {kind}: the hub's log: {down} ... {back}")
        assert len(down) == 1 and len(back) == 1, (down, back)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_nothing_lost_across_hub_restarts(dbs, kind, tmp_path):
    db = "jh_e2e_lifecycle"
    if kind != "sqlite":
        dbs.reset(kind, db)
    d = deploy(**SETTINGS, HUB_DB_URL=db_url(dbs, kind, db), AUTH_ADMIN_PASSWORD=PASSWORD,
               SPAWNER_NOTEBOOK_IMAGE=RESTART_PROOF_NOTEBOOK)

    with phase(f"databases {kind}: sign up, approve, log in, start a server"):
        admin = d.client()
        assert admin.login(ADMIN, PASSWORD).ok
        for name in (RUNNER, IDLE, PENDING):
            message = d.client().signup(name, PASSWORD)
            assert "sent to the admin" in message, f"{name}: {message!r}"
        admin.authorize(RUNNER)
        admin.authorize(IDLE)
        runner = d.client()
        assert runner.login(RUNNER, PASSWORD).ok
        start_and_wait(runner)
        runner.open_server()
        before = {
            "started": runner.server_status()["started"],
            "service": swarm.service_inspect(SERVICE)["ID"],
            "task": swarm.running_task(SERVICE)["ID"],
        }
        if kind != "sqlite":  # the hub keeps nothing in SQLite then
            assert "jupyterhub.sqlite" not in dbservers.data_files()
    check_nothing_lost(d, dbs, kind, db, admin, runner, before, "at first")

    with phase(f"databases {kind}: docker service update --force"):
        old = swarm.hub_container()
        swarm.docker("service", "update", "--force", "--detach", swarm.HUB_SERVICE, timeout=60)
        wait_new_hub(d, old)
    check_nothing_lost(d, dbs, kind, db, admin, runner, before, "after a forced update")

    with phase(f"databases {kind}: docker kill"):
        old = swarm.hub_container()
        swarm.docker("kill", old)
        wait_new_hub(d, old)
    check_nothing_lost(d, dbs, kind, db, admin, runner, before, "after docker kill")

    if kind != "sqlite":
        database_outage(d, dbs, kind, admin)
        check_nothing_lost(d, dbs, kind, db, admin, runner, before, f"after a {OUTAGE}s outage")

    if kind == "sqlite":
        with phase("databases sqlite: the documented online backup while the hub runs"):
            swarm.docker(
                "run", "--rm", "-v", f"{swarm.DATA_VOLUME}:/data", "-v", f"{tmp_path}:/backup",
                "--entrypoint", "python3", PROJECT_IMAGE, "-c",
                "import sqlite3; sqlite3.connect('/data/jupyterhub.sqlite')"
                ".backup(sqlite3.connect('/backup/jupyterhub.sqlite'))")
            backup = sqlite3.connect(tmp_path / "jupyterhub.sqlite")
            rows = backup.execute("SELECT username, is_authorized FROM users_info ORDER BY username")
            assert [(n, bool(a)) for n, a in rows] == [
                (ADMIN, True), (IDLE, True), (PENDING, False), (RUNNER, True)]


# -- 3: URL forms and unusable databases ------------------------------------------


def test_url_forms(dbs):
    db = "jh_e2e_forms"
    dbs.reset("postgresql", db)
    dbs.reset("mariadb", db)
    for kind, scheme, first in (("postgresql", "postgres", True),
                                ("mariadb", "mysql+pymysql", True),
                                ("mariadb", "mariadb", False)):
        # the first deployment of each database creates the admin account,
        # the third finds it there
        d = deploy(**SETTINGS, HUB_DB_URL=dbs.url(kind, scheme, db),
                   AUTH_ADMIN_PASSWORD=PASSWORD if first else None)
        with phase(f"databases: {scheme}:// login"):
            admin = d.client()
            result = admin.login(ADMIN, PASSWORD)
            assert result.ok, f"{scheme}://: {result}"
            assert dbs.rows(kind, db, "SELECT name FROM users") == [(ADMIN,)]
            assert "jupyterhub.sqlite" not in dbservers.data_files()
            assert_no_secrets(swarm.hub_logs(5000), dbs)


def test_unusable_database_stops_hub(dbs):
    gw = dbs.gateway
    cannot = ": cannot connect to the database"
    cases = [
        # (what, URL, the message names HUB_DB_URL with the password masked,
        #  reason, fails at once)
        ("PostgreSQL, wrong password",
         dbs.url("postgresql", "postgresql", "jupyterhub", password=WRONG_PASSWORD),
         f"HUB_DB_URL='postgresql+psycopg2://jupyterhub:***@{gw}:5432/jupyterhub'{cannot}",
         "password authentication failed", True),
        ("MariaDB, wrong password",
         dbs.url("mariadb", "mysql", "jupyterhub", password=WRONG_PASSWORD),
         f"HUB_DB_URL='mysql+pymysql://jupyterhub:***@{gw}:3306/jupyterhub'{cannot}",
         "Access denied", True),
        ("PostgreSQL, unresolvable host",
         dbs.url("postgresql", "postgres", "jupyterhub", host="no-such-db.invalid"),
         f"HUB_DB_URL='postgresql+psycopg2://jupyterhub:***@no-such-db.invalid:5432/jupyterhub'{cannot}",
         "could not translate host name", False),
        # the right password, pasted without percent-encoding ('@', '/' in it)
        ("PostgreSQL, password not percent-encoded",
         f"postgresql://jupyterhub:{dbs.passwords['postgresql']}@{gw}:5432/jupyterhub",
         f"HUB_DB_URL='postgresql://jupyterhub:***@{gw}:5432/jupyterhub' is invalid",
         "percent-encode", True),
    ]
    for what, url, expected, reason, at_once in cases:
        with phase(f"databases: {what}"):
            swarm.cleanup()
            stack_deploy(stack_env(HUB_DB_URL=url))
            task, logs = failed_hub_task(timeout=60 if at_once else 120)
            log(f"{what}: the hub's last lines:\n" + "\n".join(logs.strip().splitlines()[-3:]))
            exit_code = task["Status"]["ContainerStatus"].get("ExitCode")
            assert exit_code not in (None, 0), task["Status"]
            assert expected in logs, logs[-2000:]
            assert reason in logs, logs[-2000:]
            assert_no_secrets(logs, dbs, WRONG_PASSWORD, quote(WRONG_PASSWORD, safe=""))
            runtime = task_runtime(task)
            log(f"{what}: the hub exited with {exit_code} after {runtime:.1f}s")
            if not at_once:
                # it waited for a database that may still be starting
                assert runtime >= 28, f"{what}: gave up after {runtime:.0f}s, before the 30s wait"


def test_hub_comes_up_once_a_late_database_is_there(dbs):
    """A database not ready at the first deploy: PostgreSQL answers, but the
    hub's role does not exist yet (as while a database container still
    initialises), so every hub start ends at once with "password
    authentication failed". Swarm used to give up after three such starts
    (max_attempts: 3); once the role and the database exist, a later
    restart of the hub must find them, without a redeploy."""
    role, password, db = "jh_late", "late-Pass-4711", "jh_e2e_late"

    def psql(*sql):
        args = ["runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1"]
        for statement in sql:
            args += ["-c", statement]
        dbservers._run(args)

    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"')
    swarm.cleanup()
    url = f"postgresql://{role}:{password}@{dbs.gateway}:5432/{db}"
    d = stack_deploy(stack_env(HUB_DB_URL=url))

    def failures():
        return [t for t in swarm.service_tasks(swarm.HUB_SERVICE)
                if t["Status"]["State"] in ("failed", "rejected")]

    with phase("databases: the hub fails while its database role is missing"):
        wait_for(lambda: len(failures()) >= 3, 180, "three failed hub tasks", interval=1)
        time.sleep(30)  # past the old policy's last attempt
        log(f"{len(failures())} failed hub tasks so far")
    with phase("databases: the role and database appear; the hub comes up by itself"):
        psql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'",
             f'CREATE DATABASE "{db}" OWNER "{role}"')
        t0 = time.monotonic()
        wait_for(d.health, 120, "the hub healthy after its database appeared", interval=1)
        observe(f"a database not ready at the first deploy: the hub served "
                f"{time.monotonic() - t0:.0f}s after it was, after {len(failures())} failed starts")
        d.admin_client()  # made at this first start, with a generated password
        assert_no_secrets(swarm.hub_logs(5000), dbs, password)
    swarm.cleanup()
    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"')


# -- 4: upgrade from the original image's generation and from this project's 5.5.4 --

OLD_USERS = [
    {"name": ADMIN, "password": "admin-old-Pass1", "approve": True, "token": True},
    {"name": "alice", "password": "alice-old-Pass2", "approve": True, "token": True},
    {"name": "bob", "password": "bob-old-Pass3", "approve": False},
]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
@pytest.mark.parametrize("version", sorted(EARLIER))
def test_upgrade_from_earlier_image(dbs, kind, version):
    db = "jh_e2e_upgrade"
    old_revision = EARLIER[version]
    with phase(f"databases {kind}: a database made by JupyterHub {version}"):
        swarm.cleanup()
        swarm.docker("volume", "create", swarm.DATA_VOLUME)
        if kind == "sqlite":
            old_url = "sqlite:///" + dbservers.SQLITE_PATH
        else:
            dbs.reset(kind, db)
            # the drivers named: SQLAlchemy 2.1 (which pip gives JupyterHub
            # 5.5.4 today) makes psycopg 3 the default for postgresql://
            old_url = dbs.url(kind, SCHEMES[kind] + ("+pymysql" if kind == "mariadb" else "+psycopg2"),
                              db, host="127.0.0.1")
        made = dbservers.make_old_database(old_url, OLD_USERS, ADMIN, version=version)
        assert made["jupyterhub"] == version and made["revision"] == old_revision, made
        assert made["users_info"] == [[u["name"], u["approve"]] for u in OLD_USERS], made
        assert sorted(made["tokens"]) == [ADMIN, "alice"], made.keys()

    def revision():
        return dbs.rows(kind, db, "SELECT version_num FROM alembic_version")

    with phase(f"databases {kind}: without HUB_UPGRADE_DB the hub refuses to start"):
        env = stack_env(HUB_DB_URL=db_url(dbs, kind, db))
        stack_deploy(env)
        task, logs = failed_hub_task()
        assert task["Status"]["ContainerStatus"].get("ExitCode") not in (None, 0), task["Status"]
        assert "was made by an older JupyterHub" in logs and "HUB_UPGRADE_DB=true" in logs, logs[-2000:]
        assert old_revision in logs, logs[-2000:]
        assert_no_secrets(logs, dbs)
        assert revision() == [(old_revision,)]  # untouched
        if kind == "sqlite":
            assert not [f for f in dbservers.data_files() if f.startswith("jupyterhub.sqlite.")]

    with phase(f"databases {kind}: the same deploy with HUB_UPGRADE_DB=true"):
        known = hub_task_ids()
        d = stack_deploy(dict(env, HUB_UPGRADE_DB="true"))
        check_interpolation(d.env)
        wait_healthy_after(d, known)
        assert revision() == [(REVISION_6_1,)]
        logs = swarm.hub_logs(5000)
        assert "Upgrading" in logs, logs[-2000:]
        assert_no_secrets(logs, dbs)
        if kind == "sqlite":
            backups = [f for f in dbservers.data_files() if f.startswith("jupyterhub.sqlite.")]
            assert len(backups) == 1, dbservers.data_files()
            backup = dbservers.sqlite_rows("SELECT version_num FROM alembic_version",
                                           path="/data/" + backups[0])
            assert backup == [(old_revision,)], backup

    with phase(f"databases {kind}: accounts and tokens made by {version} work"):
        admin = d.client()
        assert admin.login(ADMIN, OLD_USERS[0]["password"]).ok
        assert admin.api("GET", "/user").json()["admin"] is True
        alice = d.client()
        assert alice.login("alice", OLD_USERS[1]["password"]).ok
        assert not d.client().login("alice", OLD_USERS[2]["password"]).ok
        refused = d.client().login("bob", OLD_USERS[2]["password"])
        assert not refused.ok and "has not been authorized" in refused.error, refused
        admin.authorize("bob")
        assert d.client().login("bob", OLD_USERS[2]["password"]).ok
        names = sorted(u["name"] for u in admin.api("GET", "/users").json())
        assert names == ["admin", "alice", "bob"], names
        for name, token in made["tokens"].items():
            r = requests.get(f"{d.base_url}/hub/api/user", headers={"Authorization": f"token {token}"},
                             timeout=30)
            assert r.status_code == 200 and r.json()["name"] == name, (name, r.status_code)
        r = requests.get(f"{d.base_url}/hub/api/user", headers={"Authorization": "token not-a-token"},
                         timeout=30)
        assert r.status_code == 403, r.status_code


# -- the opt-in postgres service: docker-compose.postgres.yml -------------------------


def test_compose_postgres(dbs, tmp_path):
    password = secrets.token_hex(16)
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "postgres_password").write_text(password + "\n")
    (secret_dir / "hub_db_url").write_text(
        f"postgresql://jupyterhub:{password}@postgres:5432/jupyterhub\n")

    def psql(sql):
        task = swarm.running_task(POSTGRES_SERVICE)
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        out = swarm.docker("exec", container, "psql", "-U", "jupyterhub", "-d", "jupyterhub",
                           "-tA", "-c", sql).stdout
        return out.split()

    with phase("databases: deploy docker-compose.swarm.yml + docker-compose.postgres.yml"):
        swarm.cleanup()
        swarm.docker("volume", "rm", POSTGRES_VOLUME, check=False)
        env = stack_env(
            AUTH_ADMIN_PASSWORD=PASSWORD,
            POSTGRES_IMAGE=None if USE_REAL else dbservers.PG_STANDIN_IMAGE,
            POSTGRES_PASSWORD_SECRET=str(secret_dir / "postgres_password"),
            JUPYTERHUB_DB_URL_SECRET=str(secret_dir / "hub_db_url"),
        )
        d = stack_deploy(env, COMPOSE_POSTGRES)
        check_interpolation(env)
        d.wait_healthy(240)

    with phase("databases: the hub keeps its data in the postgres service"):
        admin = d.client()
        assert admin.login(ADMIN, PASSWORD).ok
        assert psql("SELECT name FROM users") == [ADMIN]
        assert "jupyterhub.sqlite" not in dbservers.data_files()
        hub_env = swarm.service_inspect(swarm.HUB_SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        assert "HUB_DB_URL_FILE=/run/secrets/hub_db_url" in hub_env, hub_env
        assert "HUB_DB_URL=" in hub_env  # empty: the secret is the only source
        for service in (swarm.HUB_SERVICE, POSTGRES_SERVICE):
            assert password not in json.dumps(swarm.service_inspect(service)), service
        assert_no_secrets(swarm.hub_logs(5000), dbs, password)
        pg_logs = swarm.docker("service", "logs", "--raw", POSTGRES_SERVICE, check=False)
        assert password not in pg_logs.stdout + pg_logs.stderr

    with phase("databases: a user's server cannot reach the database"):
        start_and_wait(admin, ADMIN)
        seen = swarm.reach_from("jupyter-admin", {
            "database": ("postgres", 5432, None),
            "hub API": ("jupyterhub", 8001, "/hub/api/"),
        })
        observe(f"databases: from a user server: {seen}")
        assert seen["database"] == "no such name", seen
        assert seen["hub API"] == "HTTP 200", seen
        admin.stop_server(ADMIN)

    with phase("databases: postgres service restarted: nothing lost"):
        old = swarm.running_task(POSTGRES_SERVICE)["ID"]
        swarm.docker("service", "update", "--force", "--detach", POSTGRES_SERVICE, timeout=60)
        wait_for(lambda: (swarm.running_task(POSTGRES_SERVICE) or {"ID": old})["ID"] != old,
                 120, "a new postgres task running")
        # the hub reconnects (pessimistic disconnect handling): fresh logins
        # and the old session work once postgres answers again
        wait_for(lambda: d.client().login(ADMIN, PASSWORD).ok, 60, "a login after the restart")
        assert admin.api("GET", "/user").json()["name"] == ADMIN
        assert psql("SELECT name FROM users") == [ADMIN]

    with phase("databases: the documented pg_dump, restored into a scratch database"):
        container = swarm.running_task(POSTGRES_SERVICE)["Status"]["ContainerStatus"]["ContainerID"]
        dump = subprocess.run([swarm.DOCKER, "exec", container, "pg_dump", "-U", "jupyterhub", "-Fc",
                               "jupyterhub"], capture_output=True, timeout=60, check=True).stdout
        psql("CREATE DATABASE restored")
        subprocess.run([swarm.DOCKER, "exec", "-i", container, "pg_restore", "-U", "jupyterhub",
                        "-d", "restored"], input=dump, capture_output=True, timeout=60, check=True)
        out = swarm.docker("exec", container, "psql", "-U", "jupyterhub", "-d", "restored", "-tA",
                           "-c", "SELECT username FROM users_info").stdout
        assert out.split() == [ADMIN]


# -- 4b: servers started by this project's 5.5.4 image, across the upgrade ----------

# The last commit whose image ran JupyterHub 5.5.4: the test builds that image
# from the repository's own history (git archive), as an operator had it.
PREVIOUS_COMMIT = "4497069"
PREVIOUS_IMAGE = "jupyterhub-swarm:e2e-previous"
PREVIOUS_BASE = None if USE_REAL else "jhswarm-standin/jupyterhub:5.5.4"  # default: quay's 5.5.4


def hub_version(d):
    return requests.get(d.base_url + "/hub/api/", timeout=30).json()["version"]


@pytest.fixture(scope="module")
def previous_release(dbs, tmp_path_factory):
    """(the 5.5.4 image, that commit's stack file): what an operator ran."""
    ctx = tmp_path_factory.mktemp("previous-image")
    with phase(f"databases: build this project's 5.5.4 image (commit {PREVIOUS_COMMIT})"):
        archive = subprocess.run(["git", "-C", str(swarm.ROOT), "archive", PREVIOUS_COMMIT],
                                 capture_output=True, timeout=60)
        assert archive.returncode == 0, (
            f"git archive {PREVIOUS_COMMIT} failed (a clone without the project's history?): "
            f"{archive.stderr.decode()[-500:]}")
        subprocess.run(["tar", "-x", "-C", str(ctx)], input=archive.stdout, check=True, timeout=60)
        build = [swarm.DOCKER, "build", "-q", "-t", PREVIOUS_IMAGE, str(ctx)]
        if PREVIOUS_BASE:
            build[2:2] = ["--build-arg", f"BASE_IMAGE={PREVIOUS_BASE}"]
        proc = subprocess.run(build, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "DOCKER_BUILDKIT": "0"})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return PREVIOUS_IMAGE, ctx / swarm.COMPOSE_FILE.name


def test_running_server_survives_the_upgrade_from_5_5_4(dbs, previous_release):
    swarm.cleanup()
    previous_image, previous_stack = previous_release
    env = stack_env(JUPYTERHUB_IMAGE=previous_image, SPAWNER_NOTEBOOK_IMAGE=RESTART_PROOF_NOTEBOOK)
    with phase("databases: the 5.5.4 release: accounts, a running server, a saved file"):
        d = stack_deploy(env, compose=previous_stack)
        d.wait_healthy(240)
        assert hub_version(d) == "5.5.4"
        admin = d.client()
        assert "successful" in admin.signup(ADMIN, PASSWORD)
        assert admin.login(ADMIN, PASSWORD).ok
        assert "sent to the admin" in d.client().signup(RUNNER, PASSWORD)
        admin.authorize(RUNNER)
        runner = d.client()
        assert runner.login(RUNNER, PASSWORD).ok
        start_and_wait(runner)
        runner.open_server()
        runner.put_file("persistence/before-upgrade.txt", "saved on 5.5.4")
        before = {
            "started": runner.server_status()["started"],
            "service": swarm.service_inspect(SERVICE)["ID"],
            "task": swarm.running_task(SERVICE)["ID"],
        }

    with phase("databases: the 6.1.1 image without HUB_UPGRADE_DB: refused, the server runs on"):
        known = hub_task_ids()
        stack_deploy(dict(env, JUPYTERHUB_IMAGE=PROJECT_IMAGE))
        task, logs = failed_hub_task(known)
        assert "was made by an older JupyterHub" in logs and REVISION_5_5 in logs, logs[-2000:]
        assert swarm.running_task(SERVICE)["ID"] == before["task"]

    with phase("databases: the 6.1.1 image with HUB_UPGRADE_DB=true"):
        known = hub_task_ids()
        d = stack_deploy(dict(env, JUPYTERHUB_IMAGE=PROJECT_IMAGE, HUB_UPGRADE_DB="true"))
        wait_healthy_after(d, known)
        assert hub_version(d) == "6.1.1"
        assert dbservers.sqlite_rows("SELECT version_num FROM alembic_version") == [(REVISION_6_1,)]

    with phase("databases: after the upgrade the same server is found, with the file"):
        wait_for(lambda: server_ready(admin, RUNNER), 60, "the 6.1.1 hub to report the server ready")
        assert swarm.service_inspect(SERVICE)["ID"] == before["service"]
        assert swarm.running_task(SERVICE)["ID"] == before["task"]
        # the cookies of the 5.5.4 hub still work, and reach the same server
        assert runner.api("GET", "/user").json()["name"] == RUNNER
        assert runner.server_status()["started"] == before["started"]
        assert runner.get_file("persistence/before-upgrade.txt") == "saved on 5.5.4"
        fresh = d.client()
        assert fresh.login(RUNNER, PASSWORD).ok
        fresh.open_server(RUNNER)
        assert fresh.get_file("persistence/before-upgrade.txt", RUNNER) == "saved on 5.5.4"
        observe("upgrade 5.5.4 -> 6.1.1 (HUB_UPGRADE_DB=true): the running server kept its "
                "service, task and files; old cookies still valid")
    with phase("databases: the 6.1.1 hub stops and restarts that server"):
        runner.stop_server(RUNNER)
        assert swarm.user_services() == []
        start_and_wait(runner)
        runner.open_server()
        assert runner.get_file("persistence/before-upgrade.txt") == "saved on 5.5.4"
    swarm.cleanup()

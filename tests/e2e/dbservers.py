"""The database servers of the database e2e tests (test_00_databases.py).

scripts/db-up.sh runs Debian's PostgreSQL 15 and MariaDB on this host,
listening on localhost and on the host's docker_gwbridge address, with a user
`jupyterhub` whose passwords it keeps in /var/lib/jhswarm/db.env. The hub,
a swarm service, reaches them at that address. Here: the URLs, resetting and
reading databases (as the servers' superusers, over their local sockets),
the SQLite file on the stack's volume, and databases made by earlier hub
generations (JupyterHub 4.0.2 + NativeAuthenticator 1.2.0, the original
image's; JupyterHub 5.5.4 + NativeAuthenticator 1.3.0, this project's previous
image's: images db-up.sh builds).
"""

import json
import os
import re
import subprocess
from urllib.parse import quote

from . import swarm
from .swarm import ROOT, log

CREDENTIALS = "/var/lib/jhswarm/db.env"
USER = "jupyterhub"
OLD_HUB_IMAGES = {version: f"jhswarm-test/jupyterhub-old:{version}" for version in ("4.0.2", "5.5.4")}
PG_STANDIN_IMAGE = "jhswarm-standin/postgres:15"
PORTS = {"postgresql": 5432, "mariadb": 3306}
SQLITE_PATH = "/data/jupyterhub.sqlite"
PG_VERSION, PG_CLUSTER = "15", "main"  # scripts/db-up.sh's


def ensure_up():
    """scripts/db-up.sh, unless scripts/test.sh already ran it."""
    if os.environ.get("JHSWARM_DB_READY") == "1":
        return
    proc = subprocess.run(["bash", "scripts/db-up.sh"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/db-up.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def _run(cmd, stdin=None, timeout=60):
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        # the commands carry no passwords (they go on stdin or in files)
        raise AssertionError(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def truthy(value):
    return str(value).lower() in ("1", "t", "true")


class Servers:
    """The host's database servers, as db-up.sh left them."""

    def __init__(self):
        values = {}
        with open(CREDENTIALS) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                values[key] = value
        self.passwords = {
            "postgresql": values["JHSWARM_PG_PASSWORD"],
            "mariadb": values["JHSWARM_MYSQL_PASSWORD"],
        }
        config = swarm.docker_json("network", "inspect", "docker_gwbridge")[0]["IPAM"]["Config"][0]
        self.gateway = config["Gateway"]

    def secrets(self):
        """Every form in which a password could leak into a log: whole,
        percent-encoded, and its long pieces (a half-masked URL shows one)."""
        forms = []
        for password in self.passwords.values():
            forms += [password, quote(password, safe="")]
            forms += [p for p in re.split(r"[^A-Za-z0-9]", password) if len(p) >= 8]
        return forms

    def url(self, kind, scheme, db, password=None, host=None, port=None):
        """A URL the hub (or, with host=127.0.0.1, the host) can use; the
        password percent-encoded, as URLs need."""
        password = self.passwords[kind] if password is None else password
        host = host or self.gateway
        port = port or PORTS[kind]
        return f"{scheme}://{USER}:{quote(password, safe='')}@{host}:{port}/{db}"

    # -- administration, as the servers' superusers on their local sockets ----
    def reset(self, kind, db):
        """An empty database `db` owned by (granted to) the hub's user."""
        if kind == "postgresql":
            _run(["runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1",
                  "-c", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)',
                  "-c", f'CREATE DATABASE "{db}" OWNER {USER}'])
        else:
            hosts = _run(["mysql", "--protocol=socket", "-u", "root", "-N", "-B", "-e",
                          f"SELECT Host FROM mysql.user WHERE User='{USER}'"]).split()
            sql = f"DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4;"
            sql += "".join(f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{USER}'@'{h}';" for h in hosts)
            _run(["mysql", "--protocol=socket", "-u", "root"], stdin=sql)
        log(f"{kind}: database {db} reset")

    def stop(self, kind):
        """Stop the server (an outage: the hub's connections break)."""
        if kind == "postgresql":
            _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "stop", "-m", "fast"])
        else:
            _run(["service", "mariadb", "stop"], timeout=120)
        log(f"{kind}: server stopped")

    def start(self, kind):
        if kind == "postgresql":
            _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "start"], timeout=120)
        else:
            _run(["service", "mariadb", "start"], timeout=120)
        log(f"{kind}: server started")

    def rows(self, kind, db, sql):
        """Rows of a query, as tuples of strings."""
        if kind == "sqlite":
            return sqlite_rows(sql)
        if kind == "postgresql":
            out = _run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-d", db, "-tA", "-F", "\t", "-c", sql])
        else:
            out = _run(["mysql", "--protocol=socket", "-u", "root", "-N", "-B", "-D", db, "-e", sql])
        return [tuple(line.split("\t")) for line in out.splitlines() if line]


def sqlite_rows(sql, path=SQLITE_PATH, volume=None, image=None):
    """Rows of a query on an SQLite file of the stack's data volume, read by
    a throwaway container (read-only; works while the hub is down)."""
    from .conftest import PROJECT_IMAGE

    script = (
        "import json, sqlite3, sys\n"
        "c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n"
        "print(json.dumps([[str(v) for v in r] for r in c.execute(sys.argv[2])]))\n"
    )
    out = swarm.docker("run", "--rm", "-v", f"{volume or swarm.DATA_VOLUME}:/data",
                       "--entrypoint", "python3", image or PROJECT_IMAGE, "-c", script, path, sql).stdout
    return [tuple(r) for r in json.loads(out)]


def data_files(volume=None):
    """Names of the files in the stack's data volume."""
    from .conftest import PROJECT_IMAGE

    out = swarm.docker("run", "--rm", "-v", f"{volume or swarm.DATA_VOLUME}:/data",
                       "--entrypoint", "ls", PROJECT_IMAGE, "-1", "/data").stdout
    return sorted(out.split())


def make_old_database(db_url, users, admin, volume=None, version="4.0.2"):
    """Run an earlier hub generation (`version` 4.0.2: the original image's,
    with NativeAuthenticator 1.2.0; 5.5.4: this project's previous image's,
    with 1.3.0) against `db_url` (reached from the host's network): it signs
    `users` ({"name", "password", "approve", "token"}, the admin first) up,
    approves and logs them in, makes their API tokens. The stack's data
    volume is mounted at /data, where that hub keeps its cookie secret (and
    the SQLite file). Returns what it made: {"jupyterhub", "revision",
    "users_info", "users", "tokens"}."""
    spec = {
        "db_url": db_url,
        "cookie_secret_file": "/data/jupyterhub_cookie_secret",
        "admin": admin,
        "users": users,
    }
    cmd = [swarm.DOCKER, "run", "--rm", "-i", "--network", "host",
           "-v", f"{volume or swarm.DATA_VOLUME}:/data", OLD_HUB_IMAGES[version]]
    # the spec (with the database password) goes on stdin, not the command line
    proc = subprocess.run(cmd, input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"the JupyterHub {version} hub failed ({proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

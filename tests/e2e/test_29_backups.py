"""The backup commands of docs/administration.md ("Backups") on the real
swarm, as written but for the stack's name and the image's tag (the
harness's): the SQLite online backup taken while the hub runs holds the
user's account and approval, and the users'-files loop makes a tarball per
local volume from which the user's saved file comes back into a new
volume, readable by the user's server after a respawn.
"""

import os
import re
import socket
import sqlite3
import subprocess
import tarfile

from docpages import section

from . import swarm
from .conftest import observe, phase
from .deploy import PROJECT_IMAGE, deploy
from .hubclient import start_and_wait

NAME = "bea"
PASSWORD = "a long password of bea"
TEXT = "saved before the backup"
VOLUME = f"{swarm.USER_VOLUME_PREFIX}{NAME}"


def documented(heading, index=0):
    """The page's shell block number `index` under heading, for this
    harness's stack and image."""
    blocks = re.findall(r"```sh\n(.*?)```", section("administration", heading), re.S)
    assert len(blocks) > index, f"{heading}: {len(blocks)} shell blocks"
    block = blocks[index]
    block = block.replace("jhub_", f"{swarm.STACK}_")
    return re.sub(r"jupyterhub-swarm:\d[\w.-]*", PROJECT_IMAGE, block)


def run(script, cwd):
    """The commands in cwd, `docker` being the harness's client."""
    bindir = cwd.parent / "bin"
    if not bindir.exists():
        bindir.mkdir()
        (bindir / "docker").symlink_to(swarm.DOCKER)
    env = swarm.deploy_env({"PATH": f"{bindir}:{os.environ['PATH']}"})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_the_documented_backups_hold_accounts_and_files(tmp_path):
    try:
        with phase("backups: a user with a saved file"):
            d = deploy()
            admin = d.admin_client()
            user = d.client(NAME)
            user.signup(NAME, PASSWORD)
            admin.authorize(NAME)
            assert user.login(NAME, PASSWORD).ok
            start_and_wait(user)
            user.open_server()
            user.put_file("persistence/kept.txt", TEXT)

        with phase("backups: the database, SQLite's online backup while the hub runs"):
            db_dir = tmp_path / "db"
            db_dir.mkdir()
            run(documented("### The database"), db_dir)
            with sqlite3.connect(db_dir / "jupyterhub.sqlite") as db:
                users = [r[0] for r in db.execute("select name from users")]
                approved = db.execute("select is_authorized from users_info where username = ?",
                                      (NAME,)).fetchone()
            assert NAME in users and approved == (1,), (users, approved)

        with phase("backups: users' files, one tarball per local volume"):
            files_dir = tmp_path / "files"
            files_dir.mkdir()
            run(documented("### Users' files"), files_dir)
            tarball = files_dir / f"{socket.gethostname()}-{VOLUME}.tar.gz"
            assert tarball.exists(), sorted(p.name for p in files_dir.iterdir())
            with tarfile.open(tarball) as tar:
                names = tar.getnames()
                saved = tar.extractfile("./kept.txt").read().decode()
            assert saved == TEXT, names

        with phase("backups: restored into a new volume, the server reads it"):
            user.stop_server(NAME)
            swarm.wait_for(lambda: swarm.docker("volume", "rm", VOLUME, check=False).returncode == 0,
                           60, f"the volume {VOLUME} removable")
            restore = documented("### Users' files", 1)
            assert "v=jupyterhub-user-alice" in restore, restore
            run(restore.replace("jupyterhub-user-alice", VOLUME), files_dir)
            start_and_wait(user)
            user.open_server()
            restored = user.get_file("persistence/kept.txt")
            assert restored == TEXT, (f"after the restore persistence/kept.txt is {restored!r}; "
                                      f"persistence/ lists {user.server_api('GET', 'contents/persistence').text[:500]}")
            observe(f"backups: the SQLite copy lists users {users}, {NAME} approved; "
                    f"{tarball.name} holds {names}; restored into a new {VOLUME}, "
                    f"{NAME}'s server reads persistence/kept.txt")
    finally:
        swarm.cleanup()

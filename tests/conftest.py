"""Shared helpers: load the real jupyterhub_config.py the way the hub does.

Tests import the config's readers and parsers (`from jupyterhub_config
import ...`) and the machinery (`from jupyterhub_swarm import ...`) as
ordinary modules; load_config runs the file as JupyterHub does."""

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / "jupyterhub_config.py"
MINIMAL_ENV = {"SPAWNER_NETWORK_NAME": "jupyterhub_network"}

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests/arm64 builds the image for arm64 under emulation (tens of minutes):
# collected only when asked for (docs/releasing.md)
if os.environ.get("JHSWARM_ARM64") != "1":
    collect_ignore = ["arm64"]
sys.path.insert(0, str(ROOT))


@contextmanager
def environment(env):
    """os.environ holds exactly `env` inside the block."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_config(env=None, **overrides):
    """The Config object JupyterHub would get from jupyterhub_config.py."""
    env = dict(MINIMAL_ENV if env is None else env, **overrides)
    with environment(env):
        return PyFileConfigLoader(CONFIG_FILE.name, path=str(ROOT)).load_config()


def config_error(env=None, **overrides):
    """The configuration error message for this environment (fails if none)."""
    with pytest.raises(SystemExit) as info:
        load_config(env, **overrides)
    assert info.value.code != 0
    return str(info.value.code)


# a PostgreSQL that cannot answer (port 9, discard): a hub that contacts
# its database before naming a bad setting waits for it, then blames it
UNREACHABLE_DB = "postgresql://jh:pw@127.0.0.1:9/jh"


def jupyterhub_command():
    """The `jupyterhub` of this Python: beside it in a virtualenv (.venv, the
    stand-in images), else on PATH (the official image: /usr/bin/python3 and
    /usr/local/bin/jupyterhub; the release workflow runs the unit tests there)."""
    beside = Path(sys.executable).with_name("jupyterhub")
    found = str(beside) if beside.exists() else shutil.which("jupyterhub")
    assert found, f"no jupyterhub beside {sys.executable} or on PATH"
    return found


def run_real_hub(cwd, **env):
    """Run the real `jupyterhub -f jupyterhub_config.py` with MINIMAL_ENV,
    the unreachable database and `env`, until it exits; (status, output)."""
    jupyterhub = jupyterhub_command()
    env = dict(MINIMAL_ENV, PATH=os.environ["PATH"], HUB_DB_URL=UNREACHABLE_DB, **env)
    proc = subprocess.run([str(jupyterhub), "-f", str(CONFIG_FILE)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    print(output[-2000:])
    return proc.returncode, output

"""The hub image builds and runs for linux/arm64 on this amd64 machine
(scripts/build-arm64.sh: qemu-user-static, arm64 stand-ins, the project's
Dockerfile with --platform linux/arm64). Tens of minutes on a cold cache,
so not part of the default run: select it with

    JHSWARM_ARM64=1 .venv/bin/python -m pytest tests/arm64 -v

(as root, with the engine of scripts/env-up.sh running)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "linux/arm64"

pytestmark = pytest.mark.skipif(os.environ.get("JHSWARM_ARM64") != "1",
                                reason="slow (emulated arm64 build): set JHSWARM_ARM64=1")


def version():
    return re.search(r'org\.opencontainers\.image\.version="([^"]+)"',
                     (ROOT / "Dockerfile").read_text()).group(1)


def docker(*args, timeout=600):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def image():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-arm64.sh")],
                          capture_output=True, text=True, timeout=3 * 3600)
    print(proc.stderr[-4000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return f"jhswarm-arm64/jupyterhub-swarm:{version()}"


def test_the_image_is_arm64_and_runs_as_aarch64(image):
    assert docker("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", image) == PLATFORM
    assert docker("run", "--rm", "--platform", PLATFORM, image, "uname", "-m") == "aarch64"


def test_the_hub_and_haproxy_run(image):
    out = docker("run", "--rm", "--platform", PLATFORM, image, "jupyterhub", "--version")
    assert out.splitlines()[-1] == version().rsplit("-", 1)[0]
    docker("run", "--rm", "--platform", PLATFORM, image,
           "haproxy", "-c", "-f", "/srv/jupyterhub/docker-api-proxy.cfg")
    docker("run", "--rm", "--platform", PLATFORM, image, "python3", "-c", "import jupyterhub_swarm")

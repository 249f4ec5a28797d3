"""One version of the image, written once: the Dockerfile's
org.opencontainers.image.version label. The stack file's default image and
every `jupyterhub-swarm:<tag>` an operator is told to build or run name it,
so that deploying a new release changes the services' image (swarm then
replaces the hub) and no instruction builds `:latest`, which a redeploy of
an unchanged stack would leave running."""

import re
import subprocess
from pathlib import Path

from docpages import code_block, operator_files, section

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_FILES = ["example.env", "docker-compose.swarm.yml",
                  "docker-compose.postgres.yml", "docker-compose.secrets.yml",
                  "docker-compose.extra-config.yml", "scripts/with-env-file.sh",
                  "jupyterhub_config.d/extra.py", "docs/releasing.md",
                  *(str(p.relative_to(ROOT)) for p in operator_files())]


def image_version():
    found = re.findall(r'org\.opencontainers\.image\.version="([^"]+)"',
                       (ROOT / "Dockerfile").read_text())
    assert len(found) == 1, found
    return found[0]


def test_the_version_is_jupyterhubs_and_a_revision():
    version = image_version()
    jupyterhub = re.search(r"^jupyterhub==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert re.fullmatch(rf"{re.escape(jupyterhub.group(1))}-[1-9][0-9]*", version), version


def test_the_stack_default_image_is_this_version():
    stack = (ROOT / "docker-compose.swarm.yml").read_text()
    defaults = re.findall(r"\$\{JUPYTERHUB_IMAGE:-([^}]+)\}", stack)
    assert defaults and set(defaults) == {f"jupyterhub-swarm:{image_version()}"}, defaults


def test_every_instruction_names_this_version():
    version = image_version()
    for name in OPERATOR_FILES:
        path = ROOT / name
        if not path.exists():
            continue
        tags = re.findall(r"jupyterhub-swarm:([^\s`'\"})]+)", path.read_text())
        wrong = [t for t in tags if t not in (version, "$VERSION")]
        assert not wrong, f"{name}: jupyterhub-swarm:{wrong} (the image's version is {version})"


def test_the_upgrade_instructions_read_the_version_from_the_dockerfile():
    """The documented command ("Upgrading this image"), run on the
    Dockerfile: prints the label."""
    block = code_block(section("administration", "### Upgrading this image"))
    line = re.search(r"^VERSION=\$\((.*)\)$", block, re.M)
    assert line, "docs/administration.md, Upgrading this image: no VERSION=$(...) line"
    out = subprocess.run(["bash", "-c", line.group(1)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == image_version(), out

"""A release tag publishes the Dockerfile's version or nothing: the release
workflow's own version step (run here as GitHub runs it, with bash -e and
GITHUB_REF_NAME/GITHUB_OUTPUT) accepts exactly v<label>, and the workflow's
tag filter lets that tag through. scripts/release-version.sh reads the
label from whichever Dockerfile it is given."""

import fnmatch
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from test_version import image_version

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
SCRIPT = ROOT / "scripts" / "release-version.sh"


def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def version_step():
    steps = workflow()["jobs"]["release"]["steps"]
    found = [s for s in steps if s.get("id") == "version"]
    assert len(found) == 1, found
    return found[0]


def run_version_step(tag, tmp_path):
    """The step's script as the runner runs it (shell bash: bash -e {0})."""
    out = tmp_path / "github_output"
    out.write_text("")
    script = tmp_path / "step.sh"
    script.write_text(version_step()["run"])
    env = {"PATH": os.environ["PATH"], "GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(out)}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    return proc, out.read_text()


def release_version(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


def github_glob(pattern, name):
    """GitHub's filter glob for the patterns used here: * and ? do not
    match '/', and no character class or '**' (asserted)."""
    assert not any(c in pattern for c in "[]!+") and "**" not in pattern, pattern
    return "/" not in name and fnmatch.fnmatchcase(name, pattern)


def test_the_tag_of_the_dockerfiles_version_publishes_it(tmp_path):
    version = image_version()
    proc, output = run_version_step(f"v{version}", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert output == f"version={version}\n"


@pytest.mark.parametrize("wrong", ["v{v}-rc1", "{v}", "v{v}0", "v{jh}-99", "v{jh}", "release-{v}",
                                   "V{v}", " v{v}", "v{v}\n", "refs/tags/v{v}"])
def test_any_other_tag_publishes_nothing(tmp_path, wrong):
    version = image_version()
    tag = wrong.format(v=version, jh=version.rsplit("-", 1)[0])
    proc, output = run_version_step(tag, tmp_path)
    assert proc.returncode != 0
    assert output == "", "the step wrote an output for a refused tag"
    assert f"does not match the Dockerfile's version label {version}" in proc.stderr


def test_the_workflow_runs_on_the_release_tag_only():
    version = image_version()
    on = workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"push"}, on
    assert "branches" not in on["push"], "a branch push must not release"
    patterns = on["push"]["tags"]
    assert any(github_glob(p, f"v{version}") for p in patterns), patterns
    assert not any(github_glob(p, version) for p in patterns), "a tag without v triggers it"


def test_the_script_reads_the_given_dockerfile(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM x\nLABEL a=b \\\n      org.opencontainers.image.version="7.0.2-12" \\\n'
                          '      c=d\n')
    ok = release_version("v7.0.2-12", str(dockerfile))
    assert (ok.returncode, ok.stdout) == (0, "7.0.2-12\n"), ok.stderr
    refused = release_version(f"v{image_version()}", str(dockerfile))
    assert refused.returncode == 1 and refused.stdout == ""
    assert "does not match the Dockerfile's version label 7.0.2-12" in refused.stderr


@pytest.mark.parametrize("label, why", [
    (None, "has no org.opencontainers.image.version label"),
    ("6.1.1", "is not <jupyterhub version>-<build>"),
    ("6.1.1-0", "is not <jupyterhub version>-<build>"),
    ("latest", "is not <jupyterhub version>-<build>"),
])
def test_a_dockerfile_without_a_release_version_releases_nothing(tmp_path, label, why):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM x\n" + (f'LABEL org.opencontainers.image.version="{label}"\n'
                                        if label else ""))
    proc = release_version(f"v{label}", str(dockerfile))
    assert proc.returncode == 1 and proc.stdout == ""
    assert why in proc.stderr, proc.stderr


def test_two_labels_are_refused(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('LABEL org.opencontainers.image.version="6.1.1-1"\n'
                          'LABEL org.opencontainers.image.version="6.1.1-2"\n')
    proc = release_version("v6.1.1-1", str(dockerfile))
    assert proc.returncode == 1 and "more than one" in proc.stderr

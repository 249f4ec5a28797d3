"""The GitHub Actions workflows cannot run here: actionlint checks each of
them (syntax, expressions, action inputs, and the `run:` scripts through
shellcheck where it is installed), and any finding fails the test."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def actionlint():
    """requirements-test.txt's actionlint: beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("actionlint")
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: pip install -r requirements-test.txt"
    return found


def test_there_are_workflows():
    assert WORKFLOWS, "no .github/workflows/*.yml"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(workflow):
    proc = subprocess.run([actionlint(), "-no-color", "-oneline", str(workflow.relative_to(ROOT))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    findings = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not findings, f"actionlint (exit {proc.returncode}):\n{findings}"

"""Load a bench/ script as a module, and run its --help, for the unit tests
of the benchmarks' pure logic (the benchmarks themselves run by hand)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name):
    """bench/<name>.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def help_text(name):
    """The stdout of `bench/<name>.py --help`, which must exit 0."""
    out = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout

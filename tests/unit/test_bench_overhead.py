"""Smoke tests of bench/overhead.py without an engine: its command line and
the table it writes. The benchmark itself runs by hand (docs/performance.md)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "overhead.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--quick", "--reps", "--burst", "--only", "--no-build"):
        assert option in out.stdout


def test_quick_is_tiny():
    args = load().parse_args(["--quick"])
    assert (args.reps, args.burst, args.burst_reps, args.logins) == (1, 2, 1, 3)


@pytest.mark.parametrize("argv", [["--only", "restart"], ["--only", "nope"], ["--reps", "0"],
                                  ["--set", "NOEQUALS"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        load().parse_args(argv)
    assert e.value.code == 2


def test_p95_is_nearest_rank():
    bench = load()
    assert bench.p95([1.0]) == 1.0
    assert bench.p95([float(i) for i in range(1, 21)]) == 19.0
    assert bench.p95([float(i) for i in range(1, 101)]) == 95.0
    assert bench.p95([]) is None


def test_table_has_ratios_against_the_same_run():
    bench = load()
    text = bench.table({
        "single": {"hub": [5.0, 5.5, 6.0], "raw": [5.0, 5.0, 4.0]},
        "burst": {"n": 20, "hub": [30.0], "raw": [24.0], "hub_failed": [0], "raw_failed": [1]},
        "restart": {"n": 20, "with_n": [9.0], "empty": [6.0], "lost": [0]},
        "image": {"project": 550e6, "base": 530e6, "overhead": 20e6},
        "login": [0.2, 0.25, 0.3],
    })
    assert "| 5.50 s | raw swarm 5.00 s | 1.10× |" in text
    assert "0 failed | raw swarm 24.00 s, 1 failed | 1.25× |" in text
    assert "9.00 s, 0 lost | empty restart 6.00 s | 1.50× |" in text
    assert "20.0 MB" in text
    assert "median 0.250 s, p95 0.300 s" in text

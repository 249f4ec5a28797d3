"""Which pending reasons end a spawn at once, and the benchmark's command line.

The messages are swarm's own (swarmkit's scheduler joins one explanation per
filter with "; "); tests/e2e checks the real ones on a real swarm.
"""

import subprocess
import sys

import pytest
from conftest import ROOT
from jupyterhub_swarm import pending_is_hopeless as hopeless


@pytest.mark.parametrize("err", [
    "no suitable node (scheduling constraints not satisfied on 1 node)",
    "no suitable node (unsupported platform on 1 node)",
    "no suitable node (scheduling constraints not satisfied on 2 nodes; unsupported platform on 1 node)",
])
def test_waiting_cannot_help(err):
    assert hopeless(err)


@pytest.mark.parametrize("err", [
    "no suitable node (insufficient resources on 1 node)",
    # a node lacks the label, another one only lacks free resources now
    "no suitable node (scheduling constraints not satisfied on 1 node; insufficient resources on 1 node)",
    "no suitable node (1 node not available for new tasks)",
    "no suitable node (unsupported platform on 2 nodes; max replicas per node limit exceed)",
    "",
])
def test_waiting_may_help(err):
    assert not hopeless(err)


def test_benchmark_help_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "time_to_error.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--stock-timeout" in proc.stdout and "SwarmSpawner" in proc.stdout

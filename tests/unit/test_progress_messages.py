"""The spawn page's progress lines: swarm's task state, and its message only
when that says more (swarm's message for a starting task is "starting")."""

from types import SimpleNamespace

import pytest
from jupyterhub_swarm import SwarmUserSpawner


@pytest.mark.parametrize("state, reason, shown", [
    ("starting", "starting", "starting"),
    ("pending", "pending task scheduling", "waiting for a node: pending task scheduling"),
    ("preparing", "", "preparing (pulling image)"),
    ("assigned", "scheduler assigned task to node", "assigned: scheduler assigned task to node"),
])
def test_progress_line(state, reason, shown):
    spawner = SimpleNamespace(_plan=None)
    _, text = SwarmUserSpawner._progress_message(spawner, state, reason)
    assert text == shown

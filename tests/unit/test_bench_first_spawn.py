"""bench/first_spawn.py without a cluster: its command line, the order of its
cold cases, and the summary and table it writes from hand-made samples. The
benchmark itself runs by hand on the three-node swarm (docs/performance.md)."""

import pytest

from bench_script import help_text
from bench_script import load as _load


def load():
    return _load("first_spawn")


def test_help_runs():
    out = help_text("first_spawn")
    for option in ("--quick", "--rounds", "--ballast-mb", "--hub-from-nodes", "--keep"):
        assert option in out


def test_quick_is_one_small_round():
    args = load().parse_args(["--quick"])
    assert (args.rounds, args.ballast_mb) == (1, 50)


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--ballast-mb", "0"], ["--timeout", "0"],
                                  ["--rounds", "two"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        load().parse_args(argv)
    assert e.value.code == 2


def test_schedule_alternates_which_cold_case_comes_first():
    plan = load().schedule(3)
    assert plan == [(0, "cold"), (0, "cold+prepull"),
                    (1, "cold+prepull"), (1, "cold"),
                    (2, "cold"), (2, "cold+prepull")]


def samples():
    return [
        {"round": 0, "case": "cold", "spawn": 40.0, "manager_pull": 12.0, "worker_pull": 30.0},
        {"round": 0, "case": "warm", "spawn": 10.0},
        {"round": 0, "case": "cold+prepull", "spawn": 10.5, "prepull_from_deploy": 50.0,
         "prepull_from_hub": 20.0},
        {"round": 0, "case": "warm", "spawn": 10.0},
        {"round": 1, "case": "cold+prepull", "spawn": 11.5, "prepull_from_deploy": 60.0,
         "prepull_from_hub": 30.0},
        {"round": 1, "case": "warm", "spawn": 11.0},
        {"round": 1, "case": "cold", "error": "timed out"},
    ]


def test_summary_medians_and_ratios():
    s = load().summarize(samples())
    assert s["runs"] == {"cold": [40.0], "cold+prepull": [10.5, 11.5],
                         "warm": [10.0, 10.0, 11.0]}
    assert s["median"] == {"cold": 40.0, "cold+prepull": 11.0, "warm": 10.0}
    assert s["ratio"]["cold"] == pytest.approx(4.0)
    assert s["ratio"]["cold+prepull"] == pytest.approx(1.1)
    assert s["prepull_from_deploy"] == 55.0 and s["prepull_from_hub"] == 25.0
    assert (s["cold_manager_pull"], s["cold_worker_pull"]) == (12.0, 30.0)
    assert [f["round"] for f in s["failed"]] == [1]


def test_table_says_whether_the_target_is_met_and_lists_failures():
    m = load()
    text = m.table(m.summarize(samples()), 350)
    assert "| 4.00× |" in text
    assert "≤ 1.10× (met)" in text
    assert "350 MB" in text
    assert "FAILED: round 1, cold: timed out" in text
    slow = [dict(s, spawn=20.0) if s["case"] == "cold+prepull" else s for s in samples()]
    assert "(NOT met)" in m.table(m.summarize(slow), 350)


def test_table_of_a_run_that_measured_nothing():
    m = load()
    text = m.table(m.summarize([{"round": 0, "case": "cold", "error": "no cluster"}]), 50)
    assert "(NOT met)" in text
    assert "FAILED: round 0, cold: no cluster" in text

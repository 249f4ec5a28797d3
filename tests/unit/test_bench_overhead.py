"""Smoke tests of bench/overhead.py without an engine: its command line and
the table it writes. The benchmark itself runs by hand (docs/performance.md)."""

from pathlib import Path

import pytest

from bench_script import help_text
from bench_script import load as _load


ROOT = Path(__file__).resolve().parents[2]


def load():
    return _load("overhead")


def test_help_runs():
    out = help_text("overhead")
    for option in ("--quick", "--reps", "--burst", "--only", "--no-build"):
        assert option in out


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


def test_routes_is_opt_in_and_quick_is_tiny():
    bench = load()
    assert "routes" not in bench.parse_args([]).only
    args = bench.parse_args(["--quick", "--only", "routes"])
    assert args.only == ["routes"]
    assert (args.route_servers, args.route_window) == (2, 10)


def test_cgroup_cpu_file_follows_the_process(tmp_path):
    bench = load()
    v1 = tmp_path / "cpuacct" / "docker" / "abc" / "cpuacct.usage"
    v1.parent.mkdir(parents=True)
    v1.write_text("2500000000\n")
    proc = "4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n"
    found = bench.cgroup_cpu_file(proc, tmp_path)
    assert found == v1
    assert bench.cpu_seconds(found) == 2.5
    # the v2 counter of the unified hierarchy, when no v1 cpuacct is listed
    v2 = tmp_path / "system.slice" / "docker-abc.scope" / "cpu.stat"
    v2.parent.mkdir(parents=True)
    v2.write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    found = bench.cgroup_cpu_file("0::/system.slice/docker-abc.scope\n", tmp_path)
    assert found == v2
    assert bench.cpu_seconds(found) == 1.5
    with pytest.raises(LookupError):
        bench.cgroup_cpu_file("2:cpuacct:/docker/other\n", tmp_path)


def test_route_gets_counts_only_reads_of_the_whole_table():
    bench = load()
    log = "\n".join([
        "12:00:00.001 [ConfigProxy] info: 200 GET /api/routes ",
        "12:00:02.001 [ConfigProxy] info: 200 GET /api/routes?inactive_since=x ",
        "12:00:02.500 [ConfigProxy] info: 201 POST /api/routes/user/a ",
        "12:00:03.000 [ConfigProxy] info: 200 GET /api/routes/user/a ",
        "12:00:03.100 [ConfigProxy] info: 204 DELETE /api/routes/user/a ",
        "12:00:04.001 [ConfigProxy] info: 200 GET /api/routes",
    ])
    assert bench.route_gets(log) == 3


def test_route_table_gives_per_minute_means_and_the_difference():
    bench = load()
    w = [
        {"servers": 0, "check": "on", "seconds": 60, "hub": 1.2, "proxy": 0.6, "gets": 30, "routes": 1},
        {"servers": 0, "check": "off", "seconds": 30, "hub": 0.45, "proxy": 0.15, "gets": 0, "routes": 1},
        {"servers": 0, "check": "on", "seconds": 60, "hub": 1.4, "proxy": 0.4, "gets": 30, "routes": 1},
    ]
    text = bench.route_table(w)
    assert "| 0 (1) | on, every 2 s | 1.300 (1.200, 1.400) | 0.500 (0.600, 0.400) |" in text
    assert "| 0 (1) | off | 0.900 | 0.300 | 0.0 |" in text  # per minute from 30 s
    assert "**+0.400** | **+0.200** | +30.0 = 13.3 ms / 6.7 ms per check |" in text
    table = bench.table({"routes": {"windows": w, "note": "Only 1 of 2 servers started."}})
    assert "**on − off**" in table and "Only 1 of 2" in table


def test_servers_is_opt_in_and_its_table_compares_with_no_server():
    bench = load()
    assert "servers" not in bench.parse_args([]).only
    assert bench.parse_args(["--quick", "--only", "servers"]).servers == 2

    def sample(n, cpu, rss, health, restart, lost=0):
        return {"servers": n, "routes": n + 1, "hub_cpu": cpu, "proxy_cpu": 0.1, "hub_rss": rss,
                "health": health, "server_status": [0.02, 0.04] if n else [],
                "server_failed": 0, "restart": restart, "lost": lost}

    text = bench.servers_table({"asked": 100, "started": 98, "start_seconds": 400.0,
                                "samples": [sample(0, 0.5, 100.0, [0.01, 0.02, 0.03], 10.0),
                                            sample(98, 2.0, 150.0, [0.02, 0.04, 0.06], 14.0, 1)]})
    assert "| 0 | 0.500 | 100 | 1 | 0.020 (max 0.030) | - | 10.0, 0 lost |" in text
    assert "| 98 | 2.000 | 150 | 99 | 0.040 (max 0.060) | 0.030 (max 0.040) | 14.0, 1 lost |" in text
    assert "| **98 ÷ 0** | 4.00× | 1.50× | - | 2.00× | - | **1.40×**" in text
    assert "98 of 100 servers started" in text


def test_container_rss_sums_the_cgroups_processes(tmp_path):
    import os
    (tmp_path / "cgroup.procs").write_text(f"{os.getpid()}\n999999999\n")
    own = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))) * 1024
    total = load().container_rss(tmp_path)
    assert own * 0.5 < total < own * 2  # this process; the ended one counts nothing


def test_class_is_opt_in_and_takes_sizes():
    bench = load()
    assert "class" not in bench.parse_args([]).only
    args = bench.parse_args(["--only", "class", "--class", "20,35,50"])
    assert args.only == ["class"] and args.class_sizes == [20, 35, 50]
    assert bench.parse_args(["--quick", "--only", "class"]).class_sizes == [2]
    with pytest.raises(SystemExit):
        bench.parse_args(["--class", "0"])


def test_progress_gaps_and_the_flood_and_class_rows():
    bench = load()
    assert bench.gaps([0.0, 0.5, 0.75, 2.0]) == [0.5, 0.25, 1.25]
    spawn = {"events": ["a", "b", "c"], "times": [0.0, 0.5, 0.75, 2.0], "max_gap": 1.25,
             "took": 2.0, "ok": True}
    quiet = dict(spawn, max_gap=0.5, took=1.5)
    text = bench.table({
        "flood": {"idle": [0.01, 0.02], "idle_spawn": quiet,
                  "floods": [{"n": 10, "seconds": 2.0, "failed": 0, "health_max": 0.05,
                              "health_p95": 0.04, "spawn": spawn}]},
        "args": {"compare_set": ["X=1"]},
        "class_compare": [{"n": 5, "hub": {"all": 1.0, "failed": 2, "health_max": 0.2, "progress_max": None}, "raw": {"all": 1.0, "failed": 0, "health_max": 0.1}}],
        "class": [{"n": 50, "hub": {"all": 60.0, "failed": 0, "health_max": 0.2,
                                    "progress_max": 3.0},
                   "raw": {"all": 50.0, "failed": 1, "health_max": 0.03},
                   "signup": {"took": 21.5, "health_max": 0.41, "health_p95": 0.3}}],
    })
    assert ("slowest progress event of a spawn meanwhile | 1.250 s (first event 0.50 s, "
            "ready in 2.00 s, 3 events) | hub idle 0.500 s (first event 0.50 s, ready in "
            "1.50 s, 3 events) | 2.50× |") in text
    assert "| 60.00 s, 0 failed; slowest `/hub/health` 0.200 s" in text
    assert "raw swarm 50.00 s, 1 failed; slowest `/hub/health` 0.030 s | 1.20× |" in text
    assert "| class of 5 (X=1) logging in" in text
    assert ("| class of 50 signing up, 2 at a time, beforehand | 21.50 s; slowest "
            "`/hub/health` 0.410 s (p95 0.300 s) | - | - | ≤ 0.25 s |") in text
    assert "class of 5 (X=1) signing up" not in text  # no figures, no row


def test_bench_builds_the_hub_on_the_jupyterhub_the_dockerfile_ships():
    """The benchmark measures the product: its default BASE_IMAGE is the
    stand-in of the Dockerfile's JupyterHub release, not an older one."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    shipped = next(line.split(":")[-1] for line in dockerfile.splitlines()
                   if line.startswith("ARG BASE_IMAGE="))
    bench = load()
    default = bench.parse_args([]).base_image
    assert default.startswith("jhswarm-standin/jupyterhub:"), default
    assert default.split(":")[-1] == shipped, (default, shipped)


def test_init_spawners_lines_of_a_hub_log():
    bench = load()
    logs = ("[W 2026-12-02 05:00:01.000 JupyterHub app:3583] init_spawners did not complete "
            "within 60 seconds. Allowing to complete in the background.\n"
            "[I 2026-12-02 05:01:40.000 JupyterHub app:3566] Initialized 100 spawners in "
            "99.512 seconds\n[I ... ] sv001 still running\n")
    assert bench.init_spawners_lines(logs) == [
        "init_spawners did not complete within 60 seconds",
        "Initialized 100 spawners in 99.512 seconds"]
    assert bench.init_spawners_lines("nothing of the kind") == []

#!/usr/bin/env python3
"""Time to a spawn error: dockerspawner's stock SwarmSpawner against this
project's SwarmUserSpawner, on the real local swarm.

For each case, a spawner is built the way the hub builds it (real ORM user,
real jupyterhub.user.User, the real jupyterhub_config.py for ours) and driven
like JupyterHub 5.5 drives a spawn: `asyncio.wait_for(spawner.start(),
timeout=spawner.start_timeout)`, then on failure the hub's clean-up
(`poll()`, and `stop()` if poll says it still runs). The clock runs from the
call to start() to the exception. Docker is the real engine; nothing is
simulated. Afterwards the script checks whether a service was left behind.

Cases (default: unplaceable, missing-image):
  unplaceable    a constraint no node satisfies (node.labels.jhbench_nowhere==1)
  missing-image  an image that does not exist (pull policy skip: the hub does
                 not look; swarm rejects the task with "No such image")
  bad-mount      an nfs3 volume at 127.0.0.1:/nowhere (fails on a kernel
                 without an NFS client, "no such device"; elsewhere "connection
                 refused" or a timeout of the mount itself)
  platform       SPAWNER_PLATFORM=s390x:linux on an amd64/arm64 node

Services are named jhbench-<user> and use their own network (jhbench_network),
so they never collide with the e2e tests' jupyter-* services; the run still
takes the e2e lock (/run/jhswarm-e2e.lock) so timings are not disturbed by a
concurrent e2e session (--no-lock to skip).

Run it with the test virtualenv (scripts/test.sh creates .venv and the
stand-in images), as a user that can use the docker socket:

    .venv/bin/python bench/time_to_error.py              # 3 stock + 5 ours per case
    .venv/bin/python bench/time_to_error.py --stock-timeout 30 --reps 5 --stock-reps 3
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e import deploy as e2e, swarm  # noqa: E402  the harness's lock and cleanup

CASES = ("unplaceable", "missing-image", "bad-mount", "platform")
PREFIX = "jhbench"
NETWORK = "jhbench_network"
MISSING_IMAGE = "jhswarm-missing/image:none"
NOWHERE_LABEL = "jhbench_nowhere"
STANDIN_NOTEBOOK = "jhswarm-standin/notebook:5.5.4"
PRODUCT_NOTEBOOK = "jupyter/base-notebook:notebook-6.5.4"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/time_to_error.py",
        description="Measure how long a hopeless spawn takes to end with an error: "
        "dockerspawner's stock SwarmSpawner (BEFORE) vs SwarmUserSpawner (AFTER), "
        "on the real local swarm. Prints a table of medians and ratios.",
    )
    p.add_argument("--cases", default="unplaceable,missing-image",
                   help=f"comma-separated, from {', '.join(CASES)} (default: %(default)s)")
    p.add_argument("--reps", type=int, default=5,
                   help="repetitions per case for SwarmUserSpawner (default: %(default)s)")
    p.add_argument("--stock-reps", type=int, default=3,
                   help="repetitions per case for the stock SwarmSpawner (default: %(default)s)")
    p.add_argument("--stock-timeout", type=int, default=30,
                   help="start_timeout of the stock spawner, seconds (default: %(default)s; "
                   "the hub's default is 60, this project's 120)")
    p.add_argument("--timeout", type=int, default=120,
                   help="start_timeout of SwarmUserSpawner, seconds (default: %(default)s, "
                   "SPAWNER_START_TIMEOUT's default)")
    p.add_argument("--image", default=None,
                   help=f"a notebook image present on this node (default: {STANDIN_NOTEBOOK} "
                   f"if present, else {PRODUCT_NOTEBOOK})")
    p.add_argument("--no-lock", action="store_true", help=f"do not take {e2e.LOCK_FILE}")
    p.add_argument("--only", choices=("stock", "ours"), default=None,
                   help="measure one spawner only")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return args


# -- the two spawners, built as the hub builds them ---------------------------------


def case_env(case, image):
    """SPAWNER_* settings of one case (for our spawner)."""
    env = {
        "SPAWNER_NETWORK_NAME": NETWORK,
        "SPAWNER_NOTEBOOK_IMAGE": image,
        "SPAWNER_PULL_POLICY": "skip",
        "SPAWNER_CPU_GUARANTEE": "0.1",
        "SPAWNER_MEM_GUARANTEE": "64M",
        "SPAWNER_CPU_LIMIT": "1",
        "SPAWNER_MEM_LIMIT": "1G",
        "SPAWNER_ENDPOINT_MODE": "dnsrr",
        "SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME": PREFIX + "-{username}",
    }
    if case == "unplaceable":
        env["SPAWNER_CONSTRAINTS"] = f"{NOWHERE_LABEL}==1"
    elif case == "missing-image":
        env["SPAWNER_NOTEBOOK_IMAGE"] = MISSING_IMAGE
    elif case == "bad-mount":
        env.update({
            "SPAWNER_PERSISTENCE_VOLUME_TYPE": "nfs3",
            "SPAWNER_PERSISTENCE_NFS_HOST": "127.0.0.1",
            "SPAWNER_PERSISTENCE_NFS_DEVICE": ":/nowhere",
            "SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH": "/nonexistent-jhbench",
        })
    elif case == "platform":
        env["SPAWNER_PLATFORM"] = "s390x:linux"
    return env


def stock_config(case, env, timeout):
    """The same spawn with dockerspawner's own SwarmSpawner and the settings
    one would give it directly."""
    from docker.types import DriverConfig, Mount
    from dockerspawner import SwarmSpawner
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.spawner_class = SwarmSpawner
    s = c.SwarmSpawner
    s.image = env["SPAWNER_NOTEBOOK_IMAGE"]
    s.network_name = NETWORK
    s.use_internal_ip = True
    s.pull_policy = "skip"
    s.cpu_guarantee, s.mem_guarantee = 0.1, "64M"
    s.cpu_limit, s.mem_limit = 1.0, "1G"
    s.extra_endpoint_spec = {"mode": "dnsrr"}
    s.prefix = PREFIX
    s.start_timeout = timeout
    s.cmd = ["start-singleuser.sh"]
    placement = {}
    if case == "unplaceable":
        placement["constraints"] = [f"node.labels.{NOWHERE_LABEL}==1"]
    if case == "platform":
        placement["platforms"] = [("s390x", "linux")]
    s.extra_placement_spec = placement
    if case == "bad-mount":
        # SwarmSpawner's own volumes make bind mounts; a driver volume needs
        # extra_container_spec, as users of the stock class do.
        s.extra_container_spec = {"mounts": [Mount(
            target="/home/jovyan/work/persistence", source=f"{PREFIX}-stock-nfs",
            type="volume", driver_config=DriverConfig("local", {
                "type": "nfs", "o": "addr=127.0.0.1,rw,vers=3,nolock,soft",
                "device": ":/nowhere/stock"}))]}
    return c


def make_spawner(cfg, username):
    """The spawner as the hub builds it: the unit tests' harness."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from spawner_harness import make_spawner as build

    return build(cfg, username, api_token="jhbench-token")


# -- one measured spawn ------------------------------------------------------------------


async def timed_spawn(spawner):
    """(seconds to the error, error text, service left behind?) of one spawn,
    driven as jupyterhub.user.User.spawn/stop drive it."""
    import asyncio

    t0 = time.monotonic()
    error = None
    try:
        await asyncio.wait_for(spawner.start(), timeout=spawner.start_timeout)
    except asyncio.TimeoutError:
        error = (f"(hub) Spawner failed to start within start_timeout="
                 f"{spawner.start_timeout}s")
    except Exception as e:  # what the hub would report
        error = str(getattr(e, "jupyterhub_message", None) or e)
    took = time.monotonic() - t0
    if error is None:
        error = "(the server started: not a failure case on this machine)"
    # User.stop: poll, and stop only if the spawner says it still runs
    try:
        if await spawner.poll() is None:
            await spawner.stop()
    except Exception as e:
        error += f" [clean-up error: {e}]"
    return took, " ".join(error.split()), spawner.service_name


def docker_cli(*args, check=True):
    try:
        return swarm.docker(*args, check=check, timeout=120)
    except swarm.DockerError as e:
        raise SystemExit(str(e).strip())


def service_exists(name):
    return docker_cli("service", "inspect", name, check=False).returncode == 0


def remove_leftovers():
    e2e.remove_services(PREFIX + "-", timeout=60, check=False)


def prepare(image):
    if docker_cli("image", "inspect", MISSING_IMAGE, check=False).returncode == 0:
        raise SystemExit(f"{MISSING_IMAGE} exists on this node: remove it first")
    if docker_cli("image", "inspect", image, check=False).returncode != 0:
        raise SystemExit(f"notebook image {image} is not on this node (--image)")
    labels = docker_cli("node", "inspect", "self", "--format",
                        "{{json .Spec.Labels}}").stdout
    if f'"{NOWHERE_LABEL}"' in labels:
        raise SystemExit(f"this node has the label {NOWHERE_LABEL}: remove it first")
    remove_leftovers()
    nets = docker_cli("network", "ls", "--format", "{{.Name}}").stdout.split()
    if NETWORK not in nets:
        docker_cli("network", "create", "--driver", "overlay", "--attachable", NETWORK)


def teardown():
    e2e.remove_by_prefix(PREFIX + "-", network=NETWORK, timeout=60)


def measure(args, image):
    import asyncio
    import logging

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import load_config  # the test suite's loader of jupyterhub_config.py

    logging.basicConfig(level=logging.WARNING)
    # dockerspawner's "Service ... not found" from the hub's clean-up poll,
    # and the in-memory database's migrations: noise here
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    results = {}  # (case, kind) -> [(seconds, error, left behind)]
    for case in args.cases:
        env = case_env(case, image)
        env["SPAWNER_START_TIMEOUT"] = str(args.timeout)
        plan = []
        if args.only in (None, "stock"):
            plan.append(("stock", args.stock_reps))
        if args.only in (None, "ours"):
            plan.append(("ours", args.reps))
        for kind, reps in plan:
            for i in range(reps):
                if kind == "stock":
                    cfg = stock_config(case, env, args.stock_timeout)
                else:
                    cfg = load_config(env)
                    cfg.SwarmUserSpawner.prefix = PREFIX
                spawner = make_spawner(cfg, f"{kind}-{case}")
                took, error, service = asyncio.run(timed_spawn(spawner))
                time.sleep(1)  # let a removal settle before looking
                left = service_exists(service)
                print(f"  {case:14} {kind:5} #{i + 1}: {took:6.1f}s "
                      f"{'LEFT BEHIND ' if left else ''}{error[:160]}", flush=True)
                results.setdefault((case, kind), []).append((took, error, left))
                remove_leftovers()
    return results


def table(args, results):
    lines = [
        f"| case | stock SwarmSpawner (start_timeout={args.stock_timeout}s) | "
        "SwarmUserSpawner | ratio | service left behind (stock / ours) |",
        "|---|---|---|---|---|",
    ]
    for case in args.cases:
        stock = results.get((case, "stock"), [])
        ours = results.get((case, "ours"), [])

        def cell(runs):
            if not runs:
                return "-"
            times = [t for t, _, _ in runs]
            return (f"{statistics.median(times):.1f} s (n={len(times)}, "
                    f"{min(times):.1f}–{max(times):.1f})")

        ratio = "-"
        if stock and ours:
            ratio = (f"{statistics.median(t for t, _, _ in stock) / statistics.median(t for t, _, _ in ours):.1f}×")
        left = " / ".join(
            f"{sum(1 for *_, l in runs if l)} of {len(runs)}" if runs else "-"
            for runs in (stock, ours))
        lines.append(f"| {case} | {cell(stock)} | {cell(ours)} | {ratio} | {left} |")
    lines.append("")
    for case in args.cases:
        for kind in ("stock", "ours"):
            runs = results.get((case, kind))
            if runs:
                lines.append(f"- {case}, {kind}: {runs[-1][1]}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    image = args.image
    if image is None:
        image = STANDIN_NOTEBOOK if docker_cli(
            "image", "inspect", STANDIN_NOTEBOOK, check=False).returncode == 0 else PRODUCT_NOTEBOOK
    if not args.no_lock:
        t0 = time.monotonic()
        print(f"taking {e2e.LOCK_FILE} (an e2e session may hold it)...", flush=True)
        e2e.hold_engine_lock()
        print(f"  got it after {time.monotonic() - t0:.0f}s", flush=True)
    try:
        prepare(image)
        started = time.monotonic()
        results = measure(args, image)
        print(f"\nmeasured in {time.monotonic() - started:.0f}s; "
              f"docker server {docker_cli('version', '--format', '{{.Server.Version}}').stdout.strip()}, "
              f"nproc {os.cpu_count()}\n")
        print(table(args, results))
    finally:
        teardown()
        e2e.release_engine_lock()
    return 0


if __name__ == "__main__":
    sys.exit(main())

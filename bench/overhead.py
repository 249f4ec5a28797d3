#!/usr/bin/env python3
"""The hub's overhead against raw swarm, on the real local single-node swarm.

One run deploys the project's stack (docker-compose.swarm.yml, through the
e2e harness's deploy()) and measures, alternating hub (A) and raw (B):

  single   one server: `POST /hub/api/users/<u>/server`, then wait until
           `/user/<u>/api/status` answers 200 through the proxy's public
           port; versus raw: the Engine API call behind `docker service
           create` (POST /services/create) with the spec the hub itself
           created for a template user (same image, command, environment,
           mounts, network, resources, endpoint mode; only the user's name
           changed), then wait until the same endpoint of that server answers.
  burst    --burst servers started at once, the same two ways: time until
           all answer, and failures.
  restart  `docker service update --force <stack>_jupyterhub` with the
           burst's --burst hub servers running, versus the same restart with
           none running: time until the new hub answers /hub/health through
           the proxy, reports every server ready and every server answers
           through the proxy; servers lost (must be 0).
  image    the project image's size minus its base image's size.
  login    NativeAuthenticator logins (POST /hub/login, bcrypt): median, p95.
  routes   what the hub's periodic route check (SwarmProxy.watch_routes,
           every check_routes_interval = 2 s) costs: CPU seconds of the hub's
           and of the proxy's container (their cgroups' counters) over
           --route-window seconds with the check on and off, with no user
           server and with --route-servers running; and the GET /api/routes
           the proxy served meanwhile (its log). Off is the same hub
           restarted with an extra configuration file that sets
           check_routes_interval = 0 (docker-compose.extra-config.yml);
           servers survive the restarts. Order: on, off, on at each count.
  flood    --flood N logins at once (N fresh sessions POSTing the admin's
           password together): logins per second, and the latency of
           `GET /hub/health` polled every 0.02 s meanwhile, against its
           latency with the hub idle in the same deployment; and one user's
           spawn started with the flood, whose progress event stream
           (`GET /hub/api/users/<u>/server/progress`) is read as the spawn
           page reads it: the slowest gap between its events (the first gap
           from the POST), against the same spawn with the hub idle. With
           --compare-image, the same on a second deployment of that image
           (e.g. the code before a change), in the same run.
  servers  --servers user servers running at once (default 100, started
           through the hub in batches of --route-batch): the hub's CPU
           seconds per minute and memory (the RSS of its container's
           processes) over --route-window seconds, which spans the hub's
           polls of every server (SPAWNER_POLL_INTERVAL, 30 s); the proxy's
           route count and the latency of `/hub/health` and of a server's
           `/api/status` through it; and a hub restart with them all running
           (until all are routed; servers lost), all against the same with
           no server, in the same deployment.
  class    --class N users (accounts signed up through NativeAuthenticator
           and approved by the admin beforehand, each with a fresh browser
           session that has loaded /hub/login) log in and start their server
           at the same moment, as a browser does: POST /hub/login, GET
           /hub/spawn, then the progress event stream until "ready", then
           `/user/<u>/api/status` through the proxy until it answers. Time
           until every server answers, failures (and why), the slowest
           `/hub/health` meanwhile and the slowest gap between progress
           events of any of the N streams; against raw swarm creating N
           services from the hub's spec at once (as for burst), in the same
           run, with `/hub/health` polled meanwhile too (the machine's load
           without the hub's work). Order: hub, raw, per class size. With
           --compare-set and/or --compare-image, the same on a second
           deployment with those variables (e.g. an earlier default) and/or
           that image (e.g. the code before a change), in the same run.
           The accounts' sign-up beforehand (2 at a time) is timed too, with
           the slowest `/hub/health` meanwhile.

Fairness: every probe is `GET /user/<u>/api/status` with the same admin API
token, so both kinds of server check the token with the hub the same way.
The hub's servers are probed through the proxy's public (host-mode) port,
as users reach them; the raw servers through a small probe service on the
same overlay network, published on a host-mode port the same way and
fetching http://<service name>:8888/... (swarm's dnsrr name): one hop over
the overlay in both cases. Hub-side waits poll the hub's REST API until it
reports the server ready, then probe (as the spawn page waits for "ready"
before it redirects), so probes of servers that are not routed yet do not
load the hub. Probe interval: 0.1 s (single), 0.25 s (burst, restart).

Everything runs with the e2e engine lock held (tests/e2e/deploy.py:
hold_engine_lock); the stack is the e2e harness's (jhe2e), removed at the
end. The project image is built first, outside the lock, from the working
tree as jupyterhub-swarm:bench (--no-build: use --project-image as is).

    .venv/bin/python bench/overhead.py                  # the full run (~15 min)
    .venv/bin/python bench/overhead.py --quick          # tiny N, one repetition
    .venv/bin/python bench/overhead.py --only single,image --reps 3
    .venv/bin/python bench/overhead.py --only class --class 20,50 --compare-set SPAWNER_HTTP_TIMEOUT=30
"""

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("single", "burst", "restart", "image", "login", "flood", "routes", "class", "servers")
OPT_IN = ("flood", "routes", "class", "servers")  # not in the default --only
BENCH_IMAGE = "jupyterhub-swarm:bench"


def _lib_sh_value(name):
    """A NAME=value line of scripts/lib.sh (the stand-in images' versions)."""
    for line in (ROOT / "scripts" / "lib.sh").read_text().splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1].strip().strip('"')
    raise LookupError(f"scripts/lib.sh sets no {name}")


# the stand-in of the JupyterHub the Dockerfile ships (env-up.sh builds it)
STANDIN_BASE = f"jhswarm-standin/jupyterhub:{_lib_sh_value('JUPYTERHUB_VERSION')}"
PASSWORD = "bench-Secret-pass"
TEMPLATE_USER = "benchtmpl"
PROBER = "jupyter-bench-prober"  # jupyter-*: the harness's cleanup removes it too
PROBER_PORT = 9000
SERVER_PORT = 8888
# SPAWNER_* for the run: tiny reservations so --burst servers fit on 2 cores.
SETTINGS = {
    "HUB_CONCURRENT_SPAWN_LIMIT": "0",  # set from --burst below
    "SPAWNER_CPU_GUARANTEE": "0.01",
    "SPAWNER_MEM_GUARANTEE": "32M",
    "SPAWNER_CPU_LIMIT": "1",
    "SPAWNER_MEM_LIMIT": "1G",
}
# routes: the hub's extra configuration file (HUB_EXTRA_CONFIG_DIR), deployed
# once; the hub runs with the route check off while its service has
# ROUTE_CHECK_ENV=off (docker service update --env-add: a hub restart).
ROUTE_CHECK_ENV = "JHSWARM_BENCH_ROUTE_CHECK"
ROUTE_CHECK_CONFIG = f"""\
import os
if os.environ.get("{ROUTE_CHECK_ENV}") == "off":
    c.SwarmProxy.check_routes_interval = 0
# many servers starting at once on 2 cores answer later than the 30 s the
# hub waits by default: it would stop them
c.Spawner.http_timeout = 120
"""
EXTRA_CONFIG_COMPOSE = ROOT / "docker-compose.extra-config.yml"

# The probe service. POST {"urls": {key: url}, "token": t, "interval": s,
# "timeout": s} starts one watcher thread per url, which GETs it (redirects
# not followed) every `interval` seconds until it answers 200 with an
# /api/status body, and notes time.monotonic() then. GET returns those
# times. Containers share the host's CLOCK_MONOTONIC, so the bench compares
# them with its own clock (checked when the prober starts).
PROBER_SCRIPT = r"""
import json, threading, time, urllib.request as u
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class NoRedirect(u.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = u.build_opener(NoRedirect)
results, lock = {}, threading.Lock()
def answers(url, token):
    req = u.Request(url, headers={"Authorization": "token " + token})
    try:
        with opener.open(req, timeout=5) as r:
            return r.status == 200 and b'"started"' in r.read()
    except Exception:
        return False
def watch(key, url, token, interval, deadline):
    while time.monotonic() < deadline:
        if answers(url, token):
            with lock:
                results[key] = time.monotonic()
            return
        time.sleep(interval)
class H(BaseHTTPRequestHandler):
    def reply(self, obj):
        out = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_POST(self):
        q = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        deadline = time.monotonic() + q["timeout"]
        for key, url in q["urls"].items():
            threading.Thread(target=watch, daemon=True,
                             args=(key, url, q["token"], q["interval"], deadline)).start()
        self.reply({"now": time.monotonic()})
    def do_GET(self):
        with lock:
            self.reply({"now": time.monotonic(), "results": dict(results)})
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", %d), H).serve_forever()
""" % PROBER_PORT


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/overhead.py",
        description="Measure the hub's overhead against raw swarm on the real local "
        "swarm (single spawn, burst, hub restart, image size, login latency); prints "
        "a markdown table of medians and ratios measured in the same run.",
    )
    p.add_argument("--reps", type=int, default=5,
                   help="repetitions of the single spawn, each side (default: %(default)s)")
    p.add_argument("--burst", type=int, default=20,
                   help="servers per burst, also the N of the restart (default: %(default)s)")
    p.add_argument("--burst-reps", type=int, default=3,
                   help="repetitions of burst and restart, each side (default: %(default)s)")
    p.add_argument("--logins", type=int, default=20,
                   help="logins timed (default: %(default)s)")
    p.add_argument("--flood", default="10,50",
                   help="comma-separated numbers of logins at once (default: %(default)s)")
    p.add_argument("--class", dest="class_sizes", default="50",
                   help="class: comma-separated numbers of users starting at once "
                   "(default: %(default)s)")
    p.add_argument("--compare-set", action="append", default=[], metavar="VAR=VALUE",
                   help="class: also measure a deployment of the project image with "
                   "this variable (repeatable; e.g. an earlier default), in the same run")
    p.add_argument("--compare-image", default=None, metavar="TAG",
                   help="flood, class: also measure a deployment of this hub image (built "
                   "beforehand, e.g. from an older commit), in the same run")
    p.add_argument("--route-servers", type=int, default=50,
                   help="routes: user servers running for the second half (default: %(default)s)")
    p.add_argument("--route-batch", type=int, default=10,
                   help="routes, servers: servers started at once (default: %(default)s)")
    p.add_argument("--route-window", type=float, default=60,
                   help="routes, servers: seconds of each CPU sample (default: %(default)s)")
    p.add_argument("--servers", type=int, default=100,
                   help="servers: user servers running at once (default: %(default)s)")
    p.add_argument("--route-settle", type=float, default=30,
                   help="routes: seconds to wait after a hub (re)start or the servers' "
                   "start before a sample (default: %(default)s)")
    p.add_argument("--only", default=",".join(m for m in MEASURES if m not in OPT_IN),
                   help=f"comma-separated, from {', '.join(MEASURES)} (default: all but "
                   f"{' and '.join(OPT_IN)}); restart needs burst")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repetition, bursts of 2, 3 logins")
    p.add_argument("--no-build", action="store_true",
                   help="do not build the project image; use --project-image as it is")
    p.add_argument("--project-image", default=BENCH_IMAGE,
                   help="tag of the project image (default: %(default)s)")
    p.add_argument("--base-image", default=STANDIN_BASE,
                   help="BASE_IMAGE of the build and of the image comparison "
                   "(default: %(default)s)")
    p.add_argument("--notebook-image", default=None,
                   help="SPAWNER_NOTEBOOK_IMAGE (default: the e2e harness's)")
    p.add_argument("--hub-log-level", default=None, help="HUB_LOG_LEVEL of the hub")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="extra variable for the deployment (repeatable)")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds before a server counts as failed (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw results here")
    p.add_argument("--hub-logs", default=None, metavar="PATH",
                   help="write the hub's log (docker service logs) here at the end")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.burst, args.burst_reps, args.logins = 1, 2, 1, 3
        args.flood = "3"
        args.route_servers, args.route_window, args.route_settle = 2, 10, 5
        args.class_sizes = "2"
        args.servers = 2
    for option in ("flood", "class_sizes"):
        text = getattr(args, option)
        try:
            setattr(args, option, [int(n) for n in text.split(",") if n.strip()])
        except ValueError:
            p.error(f"--{option.replace('_sizes', '')} {text!r}: expected numbers separated by ','")
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(args.only) - set(MEASURES))
    if unknown:
        p.error(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    if "restart" in args.only and "burst" not in args.only:
        p.error("restart measures with the burst's servers running: add burst to --only")
    for item in args.set + args.compare_set:
        if "=" not in item:
            p.error(f"--set {item!r}: expected VAR=VALUE")
    if min(args.reps, args.burst, args.burst_reps, args.logins, args.route_servers,
            args.route_batch, args.servers, *args.class_sizes, *args.flood) < 1 \
            or args.route_window <= 0:
        p.error("counts must be at least 1")
    return args


def log(text):
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- statistics and the table (pure, unit-tested) -------------------------------------


def median(values):
    return statistics.median(values) if values else None


def p95(values):
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))
    return ordered[rank - 1]


def ratio(a, b):
    return a / b if a is not None and b else None


def _s(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f} s"


def _x(value):
    return "-" if value is None else f"{value:.2f}×"


def _runs(values):
    return ", ".join(f"{v:.2f}" for v in values) if values else "-"


def gaps(times):
    """The gaps between consecutive times (seconds)."""
    return [b - a for a, b in zip(times, times[1:])]


def spawn_note(spawn):
    """'first event 0.20 s, ready in 2.61 s, 5 events' of a watched spawn
    (watch_spawn). The first event is what a stalled hub delays; the
    slowest gap of a healthy one is the server's own start (the last)."""
    end = "ready" if spawn["ok"] else "FAILED"
    first = f"first event {spawn['times'][1]:.2f} s, " if len(spawn["times"]) > 1 else ""
    return f"{first}{end} in {spawn['took']:.2f} s, {len(spawn['events'])} events"


def table(results):
    """The markdown table of one run's results (see measure_* for the keys)."""
    rows = [
        "| measure | hub | baseline | ratio | target |",
        "|---|---|---|---|---|",
    ]
    single = results.get("single")
    if single:
        h, r = median(single["hub"]), median(single["raw"])
        rows.append(f"| single spawn, until `/api/status` answers (median of {len(single['hub'])}) "
                    f"| {_s(h)} | raw swarm {_s(r)} | {_x(ratio(h, r))} | ≤ 1.10× |")
    burst = results.get("burst")
    if burst:
        h, r = median(burst["hub"]), median(burst["raw"])
        rows.append(f"| burst of {burst['n']}, until all answer (median of {len(burst['hub'])}) "
                    f"| {_s(h)}, {sum(burst['hub_failed'])} failed "
                    f"| raw swarm {_s(r)}, {sum(burst['raw_failed'])} failed "
                    f"| {_x(ratio(h, r))} | ≤ 1.3×, 0 failed |")
    restart = results.get("restart")
    if restart:
        h, r = median(restart["with_n"]), median(restart["empty"])
        rows.append(f"| hub restart with {restart['n']} servers running, until all routed "
                    f"(median of {len(restart['with_n'])}) | {_s(h)}, "
                    f"{sum(restart['lost'])} lost | empty restart {_s(r)} "
                    f"| {_x(ratio(h, r))} | ≤ 2×, 0 lost |")
    image = results.get("image")
    if image:
        rows.append(f"| image: project minus base | {image['overhead'] / 1e6:.1f} MB "
                    f"| base {image['base'] / 1e6:.1f} MB | - | ≤ 40 MB |")
    login = results.get("login")
    if login:
        rows.append(f"| login (NativeAuthenticator, bcrypt), {len(login)} logins "
                    f"| median {_s(median(login), 3)}, p95 {_s(p95(login), 3)} | - | - | - |")
    for key, label in (("flood", "this image"), ("flood_compare", "--compare-image")):
        flood = results.get(key)
        for f in (flood or {}).get("floods", []):
            idle = max(flood["idle"])
            rows.append(f"| {f['n']} logins at once ({label}): slowest `/hub/health` "
                        f"| {_s(f['health_max'], 3)} (p95 {_s(f['health_p95'], 3)}), "
                        f"{f['n'] / f['seconds']:.1f} logins/s, {f['failed']} failed "
                        f"| idle {_s(idle, 3)} | {_x(ratio(f['health_max'], idle))} "
                        f"| ≤ 0.25 s, 0 failed |")
            spawn, quiet = f.get("spawn"), flood.get("idle_spawn")
            if spawn and quiet:
                rows.append(f"| {f['n']} logins at once ({label}): slowest progress event "
                            f"of a spawn meanwhile | {_s(spawn['max_gap'], 3)} "
                            f"({spawn_note(spawn)}) | hub idle {_s(quiet['max_gap'], 3)} "
                            f"({spawn_note(quiet)}) "
                            f"| {_x(ratio(spawn['max_gap'], quiet['max_gap']))} | - |")
    classes = [(c, "") for c in results.get("class") or []] \
        + [(c, f" ({compared_label(results['args'])})")
           for c in results.get("class_compare") or []]
    for c, label in classes:
        if "hub" not in c or "raw" not in c:
            rows.append(f"| class of {c['n']}{label} | not measured: "
                        f"{(c.get('error') or '?').strip().splitlines()[-1][:200]} | | | |")
            continue
        h, r = c["hub"], c["raw"]
        rows.append(f"| class of {c['n']}{label} logging in and starting at once, until all answer "
                    f"| {_s(h['all'])}, {h['failed']} failed; slowest `/hub/health` "
                    f"{_s(h['health_max'], 3)}, slowest progress event "
                    f"{_s(h['progress_max'], 3)} | raw swarm {_s(r['all'])}, {r['failed']} "
                    f"failed; slowest `/hub/health` {_s(r['health_max'], 3)} "
                    f"| {_x(ratio(h['all'], r['all']))} | ≤ 1.2×, 0 failed, ≤ 0.25 s |")
        if c.get("signup"):
            u = c["signup"]
            rows.append(f"| class of {c['n']}{label} signing up, 2 at a time, beforehand "
                        f"| {_s(u['took'])}; slowest `/hub/health` {_s(u['health_max'], 3)} "
                        f"(p95 {_s(u['health_p95'], 3)}) | - | - | ≤ 0.25 s |")
    lines = rows + [""] if len(rows) > 2 else []  # none of those measures: no empty table
    if single:
        lines.append(f"- single, hub: {_runs(single['hub'])}; raw: {_runs(single['raw'])}")
    if burst:
        lines.append(f"- burst, hub: {_runs(burst['hub'])}; raw: {_runs(burst['raw'])}")
    if restart:
        lines.append(f"- restart, with {restart['n']}: {_runs(restart['with_n'])}; "
                     f"empty: {_runs(restart['empty'])}")
    servers = results.get("servers")
    if servers:
        lines += [servers_table(servers), ""]
    routes = results.get("routes")
    if routes:
        lines += [route_table(routes["windows"], routes.get("interval", 2))]
        if routes.get("note"):
            lines += ["", routes["note"]]
        lines.append("")
    return "\n".join(lines)


# -- routes: CPU counters, the proxy's log, the table (pure, unit-tested) ------------


def cgroup_cpu_file(proc_cgroup, root="/sys/fs/cgroup"):
    """The file holding a process's cgroup's cumulative CPU time, from the
    text of /proc/<pid>/cgroup: cgroup v1's cpuacct.usage (nanoseconds)
    where a cpuacct hierarchy is listed, else v2's cpu.stat (usage_usec).
    Works for any cgroup driver and --cgroup-parent, since it reads where
    the process really is."""
    unified = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path:
            continue
        if "cpuacct" in controllers.split(","):
            for name in (controllers, "cpuacct", "cpu,cpuacct"):
                candidate = Path(root, name, path.lstrip("/"), "cpuacct.usage")
                if candidate.exists():
                    return candidate
        if hierarchy == "0" and not controllers:
            unified = Path(root, path.lstrip("/"), "cpu.stat")
    if unified is not None and unified.exists():
        return unified
    raise LookupError(f"no CPU counter for the cgroup of {proc_cgroup.strip()!r} under {root}")


def cpu_seconds(path):
    """Cumulative CPU seconds in a file cgroup_cpu_file() found."""
    text = Path(path).read_text()
    if Path(path).name == "cpuacct.usage":
        return int(text.strip()) / 1e9
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError(f"{path}: no usage_usec")


def route_gets(proxy_log):
    """How many GET /api/routes (the whole table, as the route check asks
    for it; not /api/routes/<path>) configurable-http-proxy logged: it
    logs every API response at info level, '200 GET /api/routes ...'."""
    return sum(1 for line in proxy_log.splitlines()
               if re.search(r"\bGET /api/routes(\?|\s|$)", line))


def per_minute(value, seconds):
    return value * 60 / seconds


def route_summary(windows):
    """{(servers, 'on' | 'off'): {hub, proxy, gets: [per minute, one per
    window], routes}} of routes windows (see Bench.cpu_window)."""
    out = {}
    for w in windows:
        cell = out.setdefault((w["servers"], w["check"]),
                              {"hub": [], "proxy": [], "gets": [], "routes": w["routes"]})
        for key in ("hub", "proxy", "gets"):
            cell[key].append(per_minute(w[key], w["seconds"]))
    return out


def route_table(windows, interval=2):
    """The markdown table of the routes windows: per minute, the hub's and
    the proxy's CPU seconds and the GET /api/routes served, each window's
    figure in brackets; and on − off (means), with its part per check."""
    summary = route_summary(windows)

    def fig(values, digits=3):
        mean = statistics.mean(values)
        each = ", ".join(f"{v:.{digits}f}" for v in values)
        return f"{mean:.{digits}f}" + (f" ({each})" if len(values) > 1 else "")

    rows = ["| user servers (routes) | route check | hub CPU s/min | proxy CPU s/min "
            "| GET /api/routes per min |", "|---|---|---|---|---|"]
    for servers in sorted({s for s, _ in summary}):
        on, off = summary.get((servers, "on")), summary.get((servers, "off"))
        routes = (on or off)["routes"]
        label = f"{servers} ({'-' if routes is None else routes})"
        for name, cell in (("on, every %g s" % interval, on), ("off", off)):
            if cell:
                rows.append(f"| {label} | {name} | {fig(cell['hub'])} | {fig(cell['proxy'])} "
                            f"| {fig(cell['gets'], 1)} |")
        if on and off:
            dh = statistics.mean(on["hub"]) - statistics.mean(off["hub"])
            dp = statistics.mean(on["proxy"]) - statistics.mean(off["proxy"])
            checks = statistics.mean(on["gets"]) - statistics.mean(off["gets"])
            each = (f" = {dh / checks * 1000:.1f} ms / {dp / checks * 1000:.1f} ms per check"
                    if checks > 0 else "")
            rows.append(f"| {label} | **on − off** | **{dh:+.3f}** | **{dp:+.3f}** "
                        f"| {checks:+.1f}{each} |")
    return "\n".join(rows)


def machine():
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "docker": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "git": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        + (" (with uncommitted changes)" if out(["git", "-C", str(ROOT), "status", "--porcelain"]) else ""),
    }


# -- the deployment ------------------------------------------------------------------


class Bench:
    """The deployed stack, the admin's API token, the probe service."""

    def __init__(self, args):
        import docker
        import requests

        from tests.e2e import deploy, swarm

        self.args = args
        self.e2e, self.swarm = deploy, swarm
        self.api = docker.from_env(timeout=120).api
        self.requests = requests
        self.token = None
        self.template = None  # the hub-made service spec of TEMPLATE_USER
        self.raw_tokens = {}
        self.pool = ThreadPoolExecutor(max(8, args.burst, args.route_servers, args.route_batch,
                                           *args.class_sizes))
        self.local = threading.local()

    # HTTP sessions: one per thread (requests.Session is not thread-safe)
    def http(self):
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = self.requests.Session()
            s.trust_env = False
        return s

    def hub_api(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        headers = {**kw.pop("headers", {}), "Authorization": f"token {self.token}"}
        return self.http().request(method, self.base + "/hub/api" + path, headers=headers, **kw)

    def deploy(self):
        env = dict(SETTINGS)
        env["HUB_CONCURRENT_SPAWN_LIMIT"] = str(max(20, self.args.burst, self.args.route_servers,
                                                    *self.args.class_sizes))
        if "servers" in self.args.only:
            env["HUB_ACTIVE_SERVER_LIMIT"] = str(max(100, self.args.servers))
        env["AUTH_ADMIN_PASSWORD"] = PASSWORD
        env["JUPYTERHUB_IMAGE"] = self.args.project_image
        if self.args.notebook_image:
            env["SPAWNER_NOTEBOOK_IMAGE"] = self.args.notebook_image
        if self.args.hub_log_level:
            env["HUB_LOG_LEVEL"] = self.args.hub_log_level
        for item in self.args.set:
            k, v = item.split("=", 1)
            env[k] = v
        extra = ()
        if "routes" in self.args.only:
            # the file that turns the route check off (set_route_check)
            config = Path(tempfile.mkdtemp(prefix="jhbench-"), "route-check.py")
            config.write_text(ROUTE_CHECK_CONFIG)
            env["JUPYTERHUB_EXTRA_CONFIG"] = str(config)
            extra = (EXTRA_CONFIG_COMPOSE,)
        self.deployment = self.e2e.deploy(extra_files=extra, **env)
        self.base = self.deployment.base_url
        admin = self.deployment.client()
        result = admin.login(self.e2e.ADMIN, PASSWORD)
        if not result.ok:
            raise SystemExit(f"admin login failed: {result}")
        r = admin.api("POST", f"/users/{self.e2e.ADMIN}/tokens",
                      json={"note": "bench/overhead.py", "expires_in": 86400})
        r.raise_for_status()
        self.token = r.json()["token"]
        self.admin = admin
        self.start_prober()

    def start_prober(self):
        self.prober_port = self.swarm.free_port(19000)
        self.prober_url = f"http://127.0.0.1:{self.prober_port}/"
        self.swarm.docker(
            "service", "create", "--detach", "--name", PROBER,
            "--network", self.swarm.NETWORK, "--endpoint-mode", "dnsrr",
            "--publish", f"mode=host,target={PROBER_PORT},published={self.prober_port}",
            "--reserve-cpu", "0.01", "--restart-condition", "none",
            "--entrypoint", "python3", STANDIN_BASE, "-c", PROBER_SCRIPT,
        )

        def up():
            try:
                before = time.monotonic()
                now = self.http().get(self.prober_url, timeout=2).json()["now"]
                return before, now, time.monotonic()
            except (self.requests.RequestException, ValueError):
                return False

        before, now, after = self.swarm.wait_for(up, 120, "the probe service", 0.5)
        if not before <= now <= after:
            raise SystemExit(f"the probe service's clock differs from this host's "
                             f"({before} <= {now} <= {after} does not hold)")

    def create_users(self, names):
        r = self.hub_api("POST", "/users", json={"usernames": list(names)})
        if r.status_code not in (201, 409):
            raise SystemExit(f"creating users: HTTP {r.status_code} {r.text[:300]}")

    # -- probes --------------------------------------------------------------------
    def probe_proxy(self, name):
        """True when the user's server answers /api/status through the proxy."""
        try:
            r = self.http().get(f"{self.base}/user/{name}/api/status", timeout=5,
                                headers={"Authorization": f"token {self.token}"},
                                allow_redirects=False)
        except self.requests.RequestException:
            return False
        return r.status_code == 200 and "started" in r.text

    def watch_raw(self, names, interval):
        """Have the prober watch the raw servers' /api/status at the
        services' swarm names (dnsrr)."""
        urls = {n: f"http://{service(n)}:{SERVER_PORT}/user/{n}/api/status" for n in names}
        r = self.http().post(self.prober_url, timeout=10, json={
            "urls": urls, "token": self.token, "interval": interval,
            "timeout": self.args.timeout})
        r.raise_for_status()

    def raw_answered(self):
        """{name: monotonic time it first answered} from the prober."""
        try:
            return self.http().get(self.prober_url, timeout=10).json()["results"]
        except (self.requests.RequestException, ValueError):
            return {}

    def hub_servers(self):
        """{name: 'ready' | 'pending' } of users with a server, from the hub."""
        try:
            r = self.hub_api("GET", "/users?state=active&limit=200")
        except self.requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        out = {}
        for user in r.json():
            server = user.get("servers", {}).get("")
            if server:
                out[user["name"]] = "ready" if server.get("ready") else "pending"
            elif user.get("pending"):
                out[user["name"]] = "pending"
        return out

    # -- hub side ----------------------------------------------------------------------
    def hub_start(self, names, interval):
        """Start the servers at once; seconds until each answers through the
        proxy ({name: seconds or None if it failed})."""
        def post(n):
            # the hub answers when the spawn is done or after 10 s
            # (slow_spawn_timeout); a busy hub may take longer to answer
            try:
                return self.hub_api("POST", f"/users/{n}/server", timeout=120).status_code
            except self.requests.RequestException as e:
                log(f"  POST /users/{n}/server: {e}")
                return None

        t0 = time.monotonic()
        self.t0_wall = time.time()
        codes = list(self.pool.map(post, names))
        done = {n: None for n in names}
        failed = {n for n, c in zip(names, codes) if c not in (201, 202, None)}
        for n in failed:
            log(f"  hub refused to start {n}: HTTP {codes[names.index(n)]}")
        pending = [n for n in names if n not in failed]
        seen_pending = set()
        while pending and time.monotonic() - t0 < self.args.timeout:
            state = self.hub_state(pending)
            ready = []
            for n in pending if state is not None else ():
                s = state.get(n)
                if s == "ready":
                    ready.append(n)
                elif s == "pending":
                    seen_pending.add(n)
                elif n in seen_pending or time.monotonic() - t0 > 10:
                    failed.add(n)  # the hub is not starting it any more
                    log(f"  hub server of {n} failed")
            for n, ok in zip(ready, self.pool.map(self.probe_proxy, ready)):
                if ok:
                    done[n] = time.monotonic() - t0
            pending = [n for n in pending if done[n] is None and n not in failed]
            if pending:
                time.sleep(interval)
        return done

    def hub_state(self, names):
        """{name: 'ready' | 'pending'} from the hub (None if it did not answer):
        one user's model for a single name, else the list of active users."""
        if len(names) != 1:
            return self.hub_servers()
        try:
            r = self.hub_api("GET", f"/users/{names[0]}")
        except self.requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        model = r.json()
        server = model.get("servers", {}).get("")
        if server:
            return {names[0]: "ready" if server.get("ready") else "pending"}
        return {names[0]: "pending"} if model.get("pending") else {}

    def hub_stop(self, names):
        list(self.pool.map(lambda n: self.hub_api("DELETE", f"/users/{n}/server"), names))

        def stopped():
            state = self.hub_servers()
            return state is not None and not (set(state) & set(names))

        self.swarm.wait_for(stopped, 180, "the hub to stop the servers", 0.5)
        self.wait_services_gone([service(n) for n in names])

    # -- raw side -----------------------------------------------------------------------
    def take_template(self):
        """Spawn TEMPLATE_USER through the hub once (also warms caches) and keep
        the service spec the hub created for it."""
        self.create_users([TEMPLATE_USER])
        done = self.hub_start([TEMPLATE_USER], 0.25)
        if done[TEMPLATE_USER] is None:
            raise SystemExit("the template spawn failed:\n" + self.swarm.hub_logs(80))
        log(f"template server up in {done[TEMPLATE_USER]:.1f}s (warm-up)")
        spec = self.api.inspect_service(service(TEMPLATE_USER))["Spec"]
        self.template = spec
        self.hub_stop([TEMPLATE_USER])

    def raw_spec(self, name):
        """The template's spec with the user's name replaced: what `docker
        service create` would send for this user."""
        spec = copy.deepcopy(self.template)
        tt = spec["TaskTemplate"]
        cs = tt["ContainerSpec"]
        token = self.raw_tokens[name]
        env = []
        for item in cs.get("Env") or []:
            k, _, v = item.partition("=")
            if k in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
                v = token
            env.append(f"{k}={v.replace(TEMPLATE_USER, name)}")
        cs["Env"] = env
        for m in cs.get("Mounts") or []:
            m["Source"] = m["Source"].replace(TEMPLATE_USER, name)
        tt.pop("ForceUpdate", None)
        return tt, spec.get("EndpointSpec")

    def prepare_raw(self, names):
        """Hub users and API tokens for raw servers (their JUPYTERHUB_API_TOKEN,
        so activity reports work as for the hub's servers)."""
        self.create_users(names)
        for n in names:
            if n not in self.raw_tokens:
                r = self.hub_api("POST", f"/users/{n}/tokens", json={"note": "raw bench server"})
                r.raise_for_status()
                self.raw_tokens[n] = r.json()["token"]

    def raw_start(self, names, interval):
        specs = {n: self.raw_spec(n) for n in names}
        self.watch_raw(names, interval)
        t0 = time.monotonic()
        self.t0_wall = time.time()

        def create(n):
            tt, endpoint = specs[n]
            try:
                self.api.create_service(tt, name=service(n), endpoint_spec=endpoint)
                return True
            except Exception as e:  # a failure of raw swarm counts as such
                log(f"  raw create {n}: {e}")
                return False

        created = dict(zip(names, self.pool.map(create, names)))
        done = {n: None for n in names}
        while time.monotonic() - t0 < self.args.timeout:
            answered = self.raw_answered()
            for n in names:
                if created[n] and n in answered:
                    done[n] = answered[n] - t0
            if all(done[n] is not None for n in names if created[n]):
                break
            time.sleep(0.5)
        return done

    def swarm_times(self, names):
        """Per server, seconds from the start of the measurement (self.t0_wall)
        until swarm created its task and until the task ran, from swarm's
        own timestamps: where the time went outside the hub."""
        out = {}
        for n in names:
            try:
                tasks = self.api.tasks(filters={"service": service(n)})
            except Exception:
                continue
            running = [t for t in tasks if t["Status"]["State"] == "running"]
            if running:
                t = running[0]
                out[n] = (wall(t["CreatedAt"]) - self.t0_wall,
                          wall(t["Status"]["Timestamp"]) - self.t0_wall)
        return out

    def raw_stop(self, names):
        for n in names:
            try:
                self.api.remove_service(service(n))
            except Exception:
                pass
        self.wait_services_gone([service(n) for n in names])

    def wait_services_gone(self, services):
        self.e2e.wait_services_gone(services, 180)
        time.sleep(1)  # let the engine settle before the next measurement

    def hub_logs(self):
        """Logs of every hub container of the run, oldest first (`docker
        service logs` can hang on this engine)."""
        out = []
        ids = self.swarm.docker("ps", "-aq", "--filter",
                                f"label=com.docker.swarm.service.name={self.swarm.HUB_SERVICE}",
                                check=False).stdout.split()
        for cid in reversed(ids):
            logs = self.swarm.docker("logs", "--timestamps", cid, check=False, timeout=60)
            out.append(f"===== container {cid}\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    # -- restart ------------------------------------------------------------------------
    def restart(self, names):
        """Seconds from `docker service update --force` until the new hub
        answers, reports `names` ready and each answers through the proxy;
        and how many of `names` were lost (not the same service any more, or
        not answering)."""
        before = {n: self.api.inspect_service(service(n))["ID"] for n in names}
        old = self.swarm.hub_container()
        t0 = time.monotonic()
        t0_wall = time.time()
        # --no-resolve-image: with --force the CLI otherwise asks a registry
        # for the image's digest (seconds to fail here, with no registry; the
        # project image exists only on this node)
        self.swarm.docker("service", "update", "--force", "--detach", "--no-resolve-image",
                          self.swarm.HUB_SERVICE)
        cli = time.monotonic() - t0

        def old_gone():
            if not old:
                return True
            try:
                return not self.api.inspect_container(old)["State"]["Running"]
            except Exception:
                return True

        self.swarm.wait_for(old_gone, self.args.timeout, "the old hub to stop", 0.1)
        stopped = time.monotonic() - t0
        self.swarm.wait_for(self.deployment.health, self.args.timeout,
                            "the new hub through the proxy", 0.1)
        healthy = time.monotonic() - t0
        answered = {}
        all_ready = None  # seconds until the hub's API first said every one ready
        while time.monotonic() - t0 < self.args.timeout:
            state = self.hub_servers() or {}
            if all_ready is None and all(state.get(n) == "ready" for n in names):
                all_ready = time.monotonic() - t0
            ready = [n for n in names if state.get(n) == "ready" and n not in answered]
            for n, ok in zip(ready, self.pool.map(self.probe_proxy, ready)):
                if ok:
                    answered[n] = True
            if len(answered) == len(names):
                break
            time.sleep(0.25)
        took = time.monotonic() - t0
        lost = 0
        for n in names:
            try:
                same = self.api.inspect_service(service(n))["ID"] == before[n]
            except Exception:
                same = False
            if not (same and answered.get(n)):
                lost += 1
        parts = f"CLI returned {cli:.2f}, old hub stopped {stopped:.2f}"
        try:
            task = self.swarm.running_task(self.swarm.HUB_SERVICE)
            if task is None:
                raise LookupError("swarm lists no running hub task right now")
            container = self.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
            parts += (f", new container started {wall(container['State']['StartedAt']) - t0_wall:.2f}"
                      f", task running (healthy) {wall(task['Status']['Timestamp']) - t0_wall:.2f}")
            logs = self.swarm.docker("logs", container["Id"], check=False, timeout=60)
            parts += "".join(f", {line}" for line in init_spawners_lines(logs.stdout + logs.stderr))
        except Exception as e:
            parts += f" ({e})"
        ready_words = "never" if all_ready is None else f"{all_ready:.2f}"
        log(f"  restart: {parts}, /hub/health through the proxy {healthy:.2f}, "
            f"all {len(names)} ready in the hub's API {ready_words}, "
            f"all {len(names)} answered through the proxy {took:.2f}")
        return took, lost


    # -- routes -------------------------------------------------------------------------
    def set_route_check(self, on, names):
        """Restart the hub with its route check on or off (ROUTE_CHECK_ENV,
        read by ROUTE_CHECK_CONFIG); wait until the new hub answers and
        reports `names` ready."""
        old = self.swarm.hub_container()
        change = ["--env-rm", ROUTE_CHECK_ENV] if on else ["--env-add", f"{ROUTE_CHECK_ENV}=off"]
        t0 = time.monotonic()
        self.swarm.docker("service", "update", "--detach", "--no-resolve-image", *change,
                          self.swarm.HUB_SERVICE)
        self.swarm.wait_for(lambda: self.swarm.hub_container() not in (None, old),
                            self.args.timeout, "the new hub container", 0.25)
        self.swarm.wait_for(self.deployment.health, self.args.timeout,
                            "the new hub through the proxy", 0.25)

        def all_ready():
            state = self.hub_servers()
            return state is not None and all(state.get(n) == "ready" for n in names)

        self.swarm.wait_for(all_ready, self.args.timeout, "the hub to report the servers", 0.5)
        log(f"  hub restarted with the route check {'on' if on else 'off'} "
            f"in {time.monotonic() - t0:.1f}s")

    def cpu_counter(self, service_name):
        cid = self.swarm.container_of(service_name)
        pid = self.api.inspect_container(cid)["State"]["Pid"]
        return cid, cgroup_cpu_file(Path(f"/proc/{pid}/cgroup").read_text())

    def rss(self, service_name):
        """MiB resident in the processes of the service's container (their
        cgroup's cgroup.procs, each one's VmRSS)."""
        _, counter = self.cpu_counter(service_name)
        return container_rss(counter.parent) / 2**20

    def latencies(self, names, rounds=30):
        """Seconds of `GET /hub/health` through the proxy, `rounds` times,
        and of `/user/<n>/api/status` for up to 20 of `names`, each
        `rounds // 10` times: (health, servers) lists, sequential requests."""
        health, servers = [], []
        for _ in range(rounds):
            t0 = time.monotonic()
            self.http().get(self.base + "/hub/health", timeout=30)
            health.append(time.monotonic() - t0)
            time.sleep(0.05)
        for n in names[:20] * max(1, rounds // 10):
            t0 = time.monotonic()
            ok = self.probe_proxy(n)
            servers.append(time.monotonic() - t0 if ok else None)
        return health, servers

    def proxy_gets(self, cid):
        logs = self.swarm.docker("logs", cid, check=False, timeout=60)
        return route_gets(logs.stdout + logs.stderr)

    def cpu_window(self, servers, on, seconds):
        """CPU seconds of the hub's and the proxy's containers over `seconds`
        of the bench doing nothing, and the GET /api/routes the proxy
        logged meanwhile."""
        hub_id, hub_file = self.cpu_counter(self.swarm.HUB_SERVICE)
        proxy_id, proxy_file = self.cpu_counter(self.swarm.PROXY_SERVICE)
        gets0 = self.proxy_gets(proxy_id)
        t0 = time.monotonic()
        hub0, proxy0 = cpu_seconds(hub_file), cpu_seconds(proxy_file)
        time.sleep(seconds)
        hub1, proxy1 = cpu_seconds(hub_file), cpu_seconds(proxy_file)
        took = time.monotonic() - t0
        gets = self.proxy_gets(proxy_id) - gets0
        if self.swarm.container_of(self.swarm.HUB_SERVICE) != hub_id \
                or self.swarm.container_of(self.swarm.PROXY_SERVICE) != proxy_id:
            raise SystemExit("the hub or the proxy was replaced during a CPU sample")
        routes = len(self.swarm.proxy_routes())  # outside the window: it execs in the hub
        w = {"servers": servers, "check": "on" if on else "off", "seconds": took,
             "hub": hub1 - hub0, "proxy": proxy1 - proxy0, "gets": gets, "routes": routes}
        log(f"  {servers} servers, check {w['check']}: {took:.1f}s, hub {w['hub']:.3f} "
            f"CPU s, proxy {w['proxy']:.3f} CPU s, {gets} GET /api/routes, {routes} routes")
        return w


def container_rss(cgroup_dir):
    """Bytes resident in the processes a cgroup directory lists."""
    total = 0
    for pid in Path(cgroup_dir, "cgroup.procs").read_text().split():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # ended meanwhile
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(found.group(1)) * 1024 if found else 0
    return total


def service(name):
    return f"jupyter-{name}"  # bench names need no escaping (letters, digits)


def wall(stamp):
    """Docker's RFC 3339 timestamp (nanoseconds, Z) -> seconds since the epoch."""
    from datetime import datetime, timezone

    day, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.strptime(day, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + float("0." + (frac or "0"))


def breakdown(times, answered):
    """'task created / running / answering' medians and maxima, for the log."""
    pairs = [(c, r, answered[n]) for n, (c, r) in times.items() if answered.get(n) is not None]
    if not pairs:
        return "-"
    cols = list(zip(*pairs))
    return " / ".join(f"{statistics.median(col):.2f} (max {max(col):.2f})" for col in cols)


# -- the measurements ---------------------------------------------------------------------


def start_side(b, side, names, interval):
    """Start `names` the hub's way or the raw way; ({name: seconds until it
    answered, or None}, swarm's part of it for the log)."""
    done = (b.hub_start if side == "hub" else b.raw_start)(names, interval)
    return done, breakdown(b.swarm_times(names), done)


def measure_single(b, args):
    hub_names = [f"hs{i}" for i in range(args.reps)]
    raw_names = [f"rs{i}" for i in range(args.reps)]
    b.create_users(hub_names)
    b.prepare_raw(raw_names)
    out = {"hub": [], "raw": [], "hub_failed": 0, "raw_failed": 0}
    for i in range(args.reps):
        order = ("hub", "raw") if i % 2 == 0 else ("raw", "hub")
        for side in order:
            name = (hub_names if side == "hub" else raw_names)[i]
            done, where = start_side(b, side, [name], 0.1)
            took = done[name]
            if took is None:
                out[f"{side}_failed"] += 1
                log(f"single #{i + 1} {side}: FAILED")
            else:
                out[side].append(took)
                log(f"single #{i + 1} {side}: {took:.2f}s "
                    f"(task created / running / answering: {where})")
            (b.hub_stop if side == "hub" else b.raw_stop)([name])
    return out


def measure_burst_and_restart(b, args, with_restart):
    n = args.burst
    burst = {"n": n, "hub": [], "raw": [], "hub_failed": [], "raw_failed": []}
    restart = {"n": n, "with_n": [], "empty": [], "lost": []}
    for i in range(args.burst_reps):
        hub_names = [f"hb{i}x{j:02d}" for j in range(n)]
        raw_names = [f"rb{i}x{j:02d}" for j in range(n)]
        b.create_users(hub_names)
        b.prepare_raw(raw_names)
        order = ("hub", "raw") if i % 2 == 0 else ("raw", "hub")
        for side in order:
            done, where = start_side(b, side, hub_names if side == "hub" else raw_names, 0.25)
            failed = [k for k, v in done.items() if v is None]
            times = [v for v in done.values() if v is not None]
            # until all answered; with failures, until the last success
            burst[side].append(max(times) if times else args.timeout)
            burst[f"{side}_failed"].append(len(failed))
            log(f"burst #{i + 1} {side}: all {n} in {burst[side][-1]:.2f}s, "
                f"{len(failed)} failed {failed[:5]} "
                f"(task created / running / answering: {where})")
            if side == "hub":
                if with_restart:
                    ok = [k for k in hub_names if done[k] is not None]
                    took, lost = b.restart(ok)
                    lost += len(hub_names) - len(ok)
                    restart["with_n"].append(took)
                    restart["lost"].append(lost)
                    log(f"restart #{i + 1} with {len(ok)} running: {took:.2f}s, {lost} lost")
                b.hub_stop(hub_names)
            else:
                b.raw_stop(raw_names)
            if with_restart and side == order[-1]:
                # the empty restart: no hub server (nor raw service) running
                took, _ = b.restart([])
                restart["empty"].append(took)
                log(f"restart #{i + 1} empty: {took:.2f}s")
    return burst, (restart if with_restart else None)


def start_in_batches(b, names, batch):
    """Start `names` through the hub, `batch` at a time (50 spawns at once
    load 2 cores so that the hub misses its health check and swarm kills
    it): the names whose servers came up, and the seconds it took."""
    t0, up = time.monotonic(), []
    for i in range(0, len(names), batch):
        part = names[i:i + batch]
        done = b.hub_start(part, 0.5)
        up += [n for n in part if done[n] is not None]
    return up, time.monotonic() - t0


def measure_routes(b, args):
    """On, off, on with no user server; the same with --route-servers
    running (as many as started, said in the note)."""
    windows, names, note = [], [], None
    for count in (0, args.route_servers):
        if count:
            names = [f"rt{j:02d}" for j in range(count)]
            b.create_users(names)
            names, took = start_in_batches(b, names, args.route_batch)
            log(f"routes: {len(names)} of {count} servers up in {took:.1f}s "
                f"(batches of {args.route_batch})")
            if len(names) < count:
                note = f"Only {len(names)} of {count} servers started."
        on = True  # the hub as deployed, and after the last sample of 0 servers
        for want in (True, False, True):
            if want != on:
                b.set_route_check(want, names)
                on = want
            time.sleep(args.route_settle)
            windows.append(b.cpu_window(len(names), on, args.route_window))
    b.hub_stop(names)
    return {"windows": windows, "interval": 2, "note": note}


def init_spawners_lines(logs):
    """What JupyterHub logs of its start-up check of the running servers:
    "Initialized N spawners in S seconds" and the init_spawners_timeout
    warning (a hub answers before the check ends)."""
    return [m.group(0) for m in re.finditer(
        r"Initialized \d+ spawners in [\d.]+ seconds"
        r"|init_spawners did not complete within \d+ seconds", logs)]


def servers_sample(b, args, names):
    """One state of the servers measure: CPU, memory, routes, latencies,
    then a hub restart with `names` running."""
    time.sleep(args.route_settle)
    window = b.cpu_window(len(names), True, args.route_window)
    rss = b.rss(b.swarm.HUB_SERVICE)
    health, servers = b.latencies(names)
    failed = sum(1 for t in servers if t is None)
    sample = {"servers": len(names), "routes": window["routes"],
              "hub_cpu": per_minute(window["hub"], window["seconds"]),
              "proxy_cpu": per_minute(window["proxy"], window["seconds"]),
              "hub_rss": rss, "health": health,
              "server_status": [t for t in servers if t is not None],
              "server_failed": failed}
    took, lost = b.restart(names)
    sample.update(restart=took, lost=lost)
    log(f"servers: {len(names)} running: hub {sample['hub_cpu']:.3f} CPU s/min, "
        f"{rss:.0f} MiB; {window['routes']} routes; /hub/health median "
        f"{median(health):.3f}s; restart {took:.1f}s, {lost} lost")
    return sample


def measure_servers(b, args):
    """No server, then --servers running (see the module's docstring)."""
    empty = servers_sample(b, args, [])
    names = [f"sv{j:03d}" for j in range(args.servers)]
    b.create_users(names)
    up, took = start_in_batches(b, names, args.route_batch)
    log(f"servers: {len(up)} of {len(names)} up in {took:.1f}s (batches of {args.route_batch})")
    full = servers_sample(b, args, up)
    b.hub_stop(up)
    return {"asked": args.servers, "started": len(up), "start_seconds": took,
            "samples": [empty, full]}


def servers_table(result):
    """The markdown table of the servers measure: each state, and the
    ratio of the full one to the empty one."""
    empty, full = result["samples"]

    def cells(x):
        status = x["server_status"]
        return [f"{x['hub_cpu']:.3f}", f"{x['hub_rss']:.0f}", str(x["routes"]),
                f"{median(x['health']):.3f} (max {max(x['health']):.3f})",
                f"{median(status):.3f} (max {max(status):.3f})" if status else "-",
                f"{x['restart']:.1f}, {x['lost']} lost"]

    rows = ["| user servers | hub CPU s/min | hub RSS MiB | proxy routes "
            "| `/hub/health` s, median | a server's `/api/status` s, median "
            "| hub restart s, until all routed |", "|---|---|---|---|---|---|---|"]
    for x in (empty, full):
        rows.append(f"| {x['servers']} | " + " | ".join(cells(x)) + " |")
    rows.append(f"| **{full['servers']} ÷ 0** | {_x(ratio(full['hub_cpu'], empty['hub_cpu']))} "
                f"| {_x(ratio(full['hub_rss'], empty['hub_rss']))} | - "
                f"| {_x(ratio(median(full['health']), median(empty['health'])))} | - "
                f"| **{_x(ratio(full['restart'], empty['restart']))}** (target ≤ 1.5×, 0 lost) |")
    note = (f"{result['started']} of {result['asked']} servers started, in "
            f"{result['start_seconds']:.0f} s (batches)")
    if full["server_failed"]:
        note += f"; {full['server_failed']} `/api/status` probes failed"
    return "\n".join(rows + ["", note + "."])


def login_page(b):
    """A fresh session that has loaded /hub/login (for its XSRF cookie)."""
    client = b.deployment.client()
    client.get("/hub/login").raise_for_status()
    return client


def post_login(b, client, timeout, name=None):
    """POST the name (the admin's) and password as the login form does: the status."""
    return client.session.post(client.url("/hub/login"), allow_redirects=False,
                               timeout=timeout, data={"username": name or b.e2e.ADMIN,
                                                      "password": PASSWORD,
                                                      "_xsrf": client.hub_xsrf()}).status_code


def measure_login(b, args):
    times = []
    for _ in range(args.logins):
        client = login_page(b)
        t0 = time.monotonic()
        status = post_login(b, client, 30)
        took = time.monotonic() - t0
        if status not in (302, 303):
            raise SystemExit(f"login failed: HTTP {status}")
        times.append(took)
    log(f"logins: median {median(times):.3f}s p95 {p95(times):.3f}s")
    return times


def health_latencies(b, stop, interval=0.02):
    """GET /hub/health through the proxy until `stop` is set: each one's
    seconds (a failed request counts with the time it took)."""
    session = b.requests.Session()
    session.trust_env = False
    out = []
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            session.get(b.base + "/hub/health", timeout=30)
        except b.requests.RequestException:
            pass
        out.append(time.monotonic() - t0)
        time.sleep(interval)
    return out


def measure_flood(b, args):
    def polled(work):
        return polled_health(b, work)

    _, idle = polled(lambda: time.sleep(3))
    spawner = "floodspawn"
    b.create_users([spawner])
    quiet = watch_spawn(b, spawner)
    b.hub_stop([spawner])
    log(f"spawn with the hub idle: slowest progress gap {_s(quiet['max_gap'], 3)} "
        f"({spawn_note(quiet)})")
    floods = []
    for n in args.flood:
        clients = [login_page(b) for _ in range(n)]
        together = threading.Barrier(n + 1)  # the logins and the spawn

        def login(client):
            together.wait()
            return post_login(b, client, 120)

        def spawn():
            together.wait()
            return watch_spawn(b, spawner)

        def flood():
            with ThreadPoolExecutor(n + 1) as pool:
                watched = pool.submit(spawn)
                t0 = time.monotonic()
                codes = list(pool.map(login, clients))
                took = time.monotonic() - t0
                return codes, took, watched.result()

        (codes, took, spawned), latencies = polled(flood)
        b.hub_stop([spawner])
        failed = sum(1 for c in codes if c not in (302, 303))
        floods.append({"n": n, "seconds": took, "failed": failed,
                       "health_max": max(latencies), "health_p95": p95(latencies),
                       "spawn": spawned})
        log(f"flood of {n}: {took:.2f}s, {failed} failed, /hub/health max "
            f"{max(latencies):.3f}s (idle max {max(idle):.3f}s); slowest progress gap "
            f"{_s(spawned['max_gap'], 3)} ({spawn_note(spawned)}; "
            f"idle {_s(quiet['max_gap'], 3)})")
    return {"idle": idle, "idle_spawn": quiet, "floods": floods}


def watch_spawn(b, name, timeout=None):
    """Start `name`'s server (POST /hub/api/users/<name>/server) and read
    its progress event stream as the spawn page does: opened once the hub
    reports the spawn pending (or the POST has returned: a spawn that
    ended within it), read until a ready or failed event. Returns the
    events, the times (seconds from the POST) they arrived, the gaps
    between POST, events and the end, and the slowest gap."""
    timeout = timeout or b.args.timeout
    answer = {}

    def post():
        try:
            answer["status"] = b.hub_api("POST", f"/users/{name}/server",
                                         timeout=timeout).status_code
        except b.requests.RequestException as e:
            answer["status"] = f"{e}"

    t0 = time.monotonic()
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    while "status" not in answer and time.monotonic() - t0 < timeout:
        try:
            model = b.hub_api("GET", f"/users/{name}").json()
            if model.get("pending") == "spawn" or model.get("servers", {}).get(""):
                break
        except (b.requests.RequestException, ValueError):
            pass
        time.sleep(0.05)
    watched = read_progress(b, name, t0, timeout)
    poster.join(timeout)
    watched["post"] = answer.get("status")
    return watched


def read_progress(b, name, t0, timeout):
    """Read `name`'s progress event stream (with the admin's token) until a
    ready or failed event: the event messages, the times (seconds since t0;
    the first is t0 itself) they arrived, their gaps and the slowest."""
    events, times, ok = [], [0.0], False
    try:
        with b.hub_api("GET", f"/users/{name}/server/progress", stream=True,
                       headers={"Accept": "text/event-stream"},
                       timeout=(10, timeout)) as r:
            if r.status_code != 200:
                events.append(f"HTTP {r.status_code} {r.text[:200]}")
            # chunk_size None: each chunk as it arrives (the default, 512,
            # waits for 512 bytes and so holds events back)
            lines = r.iter_lines(chunk_size=None, decode_unicode=True)
            for line in lines if r.status_code == 200 else ():
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    times.append(time.monotonic() - t0)
                    events.append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        ok = bool(event.get("ready"))
                        break
    except b.requests.RequestException as e:
        events.append(f"(event stream: {e})")
    return {"events": events, "times": times, "gaps": gaps(times),
            "max_gap": max(gaps(times), default=None),
            "took": times[-1], "ok": ok}


def class_accounts(b, names):
    """NativeAuthenticator accounts for `names`: signed up through
    /hub/signup and approved by the admin (the Authorize Users page's
    button), as a teacher prepares a class."""
    def signup(name):
        b.deployment.client().signup(name, PASSWORD)

    with ThreadPoolExecutor(2) as pool:  # bcrypt: one hash per signup
        list(pool.map(signup, names))
    for name in names:
        b.admin.authorize(name)


def class_start(b, names):
    """`names` log in and start at the same moment, each as a browser does
    (see the module's docstring). Returns ({name: seconds until its server
    answered through the proxy, or None}, {name: why it failed},
    [progress stream of each])."""
    clients = {n: login_page(b) for n in names}
    together = threading.Barrier(len(names) + 1)
    t0 = {}

    def one(name):
        client = clients[name]
        together.wait()
        start = t0["t"]
        try:
            status = post_login(b, client, b.args.timeout, name)
            if status not in (302, 303):
                return None, f"login: HTTP {status}", None
            left = max(1, b.args.timeout - (time.monotonic() - start))
            r = client.get("/hub/spawn", allow_redirects=False, timeout=left)
            if r.status_code not in (302, 303):
                return None, f"GET /hub/spawn: HTTP {r.status_code}", None
        except b.requests.RequestException as e:
            return None, f"{e}", None
        left = b.args.timeout - (time.monotonic() - start)
        if left <= 0:
            return None, "login and spawn request took the whole --timeout", None
        watched = read_progress(b, name, start, left)
        if not watched["ok"]:
            return None, f"spawn: {(watched['events'] or ['no event'])[-1][:200]}", watched
        while time.monotonic() - start < b.args.timeout:
            if b.probe_proxy(name):
                return time.monotonic() - start, None, watched
            time.sleep(0.25)
        return None, "ready, but not answering through the proxy", watched

    with ThreadPoolExecutor(len(names)) as pool:
        futures = {n: pool.submit(one, n) for n in names}
        t0["t"] = time.monotonic()
        b.t0_wall = time.time()
        together.wait()
        out = {n: f.result() for n, f in futures.items()}
    done = {n: r[0] for n, r in out.items()}
    why = {n: r[1] for n, r in out.items() if r[1]}
    return done, why, [r[2] for r in out.values() if r[2]]


def polled_health(b, work):
    """Run work() while polling /hub/health (health_latencies): (its result,
    the latencies)."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as one:
        latencies = one.submit(health_latencies, b, stop)
        try:
            result = work()
        finally:
            stop.set()
        return result, latencies.result()


def measure_class(b, args, out=None, save=lambda: None):
    """Each class size into `out` (returned), save() after each."""
    out = [] if out is None else out
    for k, n in enumerate(args.class_sizes):
        hub_names = [f"cl{k}x{j:02d}" for j in range(n)]
        raw_names = [f"rc{k}x{j:02d}" for j in range(n)]
        t = time.monotonic()
        _, health = polled_health(b, lambda: class_accounts(b, hub_names))
        took = time.monotonic() - t
        b.prepare_raw(raw_names)
        log(f"class of {n}: accounts signed up and approved in {took:.1f}s; "
            f"/hub/health max {max(health):.3f}s meanwhile")
        row = {"n": n, "signup": {"took": took, "health_max": max(health),
                                  "health_p95": p95(health)}}
        out.append(row)
        try:
            measure_class_sides(b, args, n, hub_names, raw_names, row)
        except Exception:
            import traceback

            row["error"] = traceback.format_exc()
            log(f"class of {n} failed:\n{row['error']}")
            break
        finally:
            save()
    return out


def measure_class_sides(b, args, n, hub_names, raw_names, row):
    """One class size: the hub's side, then raw swarm's, into `row`."""
    for side in ("hub", "raw"):
        if side == "hub":
            (done, why, streams), health = polled_health(b, lambda: class_start(b, hub_names))
            slowest = max((s["max_gap"] for s in streams if s["max_gap"] is not None),
                          default=None)
        else:
            done, health = polled_health(b, lambda: b.raw_start(raw_names, 0.25))
            why, slowest = {k: "did not answer" for k, v in done.items() if v is None}, None
        where = breakdown(b.swarm_times(list(done)), done)
        times = [v for v in done.values() if v is not None]
        row[side] = {"all": max(times) if times else None,
                     "median": median(times), "failed": len(why),
                     "why": sorted(set(why.values()))[:5],
                     "health_max": max(health), "health_p95": p95(health),
                     "progress_max": slowest, "swarm": where}
        log(f"class of {n}, {side}: {len(times)} answered, last at "
            f"{_s(row[side]['all'])}, {len(why)} failed {row[side]['why']}; "
            f"/hub/health max {max(health):.3f}s; slowest progress gap {_s(slowest, 3)} "
            f"(task created / running / answering: {where})")
        if side == "hub":
            b.hub_stop(hub_names)
        else:
            b.raw_stop(raw_names)


def compared_label(args):
    """What the compared deployment differs in: --compare-image, --compare-set."""
    return ", ".join(filter(None, [args.get("compare_image"), *args.get("compare_set", [])]))


def deploy_compared(b, args):
    """The stack again, on --compare-image and with --compare-set added; a
    function that puts ours back in b.args (for the next deploy)."""
    log(f"redeploying with {compared_label(vars(args))} for the comparison")
    b.swarm.cleanup()
    own, own_set = b.args.project_image, b.args.set
    b.args.project_image = args.compare_image or own
    b.args.set = args.set + args.compare_set
    b.deploy()
    if args.compare_image:
        # the stack's docker-api service (HAProxy) runs the hub's image; an
        # image from before it has no HAProxy: keep that service, which is
        # not the hub code compared, on ours
        b.swarm.docker("service", "update", "--quiet", "--no-resolve-image",
                       "--image", own, b.swarm.DOCKER_API_SERVICE, timeout=300)

    def ours():
        b.args.project_image, b.args.set = own, own_set
    return ours


def guarded(measure, b, args, *more):
    """measure(b, args, *more), or [] after logging why it failed: the run
    goes on with the next measure and still prints what it has."""
    import traceback

    try:
        return measure(b, args, *more)
    except Exception:
        log(f"{measure.__name__} failed:\n{traceback.format_exc()}")
        return []


def image_sizes(project, base):
    def size(image):
        out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"no image {image}: {out.stderr.strip()}")
        return int(out.stdout.strip())

    p, b = size(project), size(base)
    return {"project": p, "base": b, "overhead": p - b}


def build(args):
    log(f"building {args.project_image} FROM {args.base_image} (outside the engine lock)")
    cmd = ["docker", "build", "--build-arg", f"BASE_IMAGE={args.base_image}",
           "-t", args.project_image, "."]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(ROOT))
    if not args.no_build:
        build(args)
    results = {"machine": machine(), "args": vars(args)}
    if "image" in args.only:
        results["image"] = image_sizes(args.project_image, args.base_image)
    engine = [m for m in args.only if m != "image"]
    if engine:
        from tests.e2e import deploy

        log("taking the e2e engine lock (another session may hold it)")
        t0 = time.monotonic()
        deploy.hold_engine_lock()
        log(f"  got it after {time.monotonic() - t0:.0f}s")
        b = Bench(args)
        started = time.monotonic()
        try:
            b.deploy()
            if {"single", "burst", "class"} & set(engine):
                b.take_template()
            if "single" in engine:
                results["single"] = measure_single(b, args)
            if "burst" in engine:
                results["burst"], restart = measure_burst_and_restart(
                    b, args, "restart" in engine)
                if restart:
                    results["restart"] = restart
            if "login" in engine:
                results["login"] = measure_login(b, args)
            if "routes" in engine:
                results["routes"] = measure_routes(b, args)
            def save():  # after each measure: a run stopped early keeps what it has
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=1, default=str))

            if "servers" in engine:
                results["servers"] = measure_servers(b, args)
                save()
            if "flood" in engine:
                results["flood"] = measure_flood(b, args)
                save()
            if "flood" in engine and args.compare_image:
                ours = deploy_compared(b, args)
                results["flood_compare"] = measure_flood(b, args)
                save()
                ours()
                if "class" in engine:
                    b.swarm.cleanup()
                    b.deploy()
                    b.take_template()
            if "class" in engine:
                results["class"] = []
                guarded(measure_class, b, args, results["class"], save)
            if "class" in engine and (args.compare_set or args.compare_image):
                ours = deploy_compared(b, args)
                b.take_template()
                results["class_compare"] = []
                guarded(measure_class, b, args, results["class_compare"], save)
                ours()
        finally:
            log(f"measured in {time.monotonic() - started:.0f}s; removing the stack")
            try:
                if args.hub_logs:
                    Path(args.hub_logs).write_text(b.hub_logs())
            finally:
                b.swarm.cleanup()
    m = results["machine"]
    print(f"\n{m['date']}: nproc {m['nproc']}, memory {m['memory']}, docker {m['docker']}, "
          f"kernel {m['kernel']}, git {m['git']}\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

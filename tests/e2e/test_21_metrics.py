"""/hub/metrics scraped by a real Prometheus (Debian's `prometheus`,
scripts/prometheus-up.sh) through the stack's proxy, with the read-only
token of the shared deployment (HUB_METRICS_TOKEN, conftest.SETTINGS), as
docs/administration.md's "Metrics" configures it: after a failed spawn (the
`nowhere` rule: no node has its label) and a successful one, the new series
arrive with the values docker's own view gives. Without the token the hub
answers 403.

The values are compared with what they were before this test's spawns
(other modules of the session share the deployment): the unplaceable
failures grow by one and no other kind grows, the node wait histogram counts
one more placement, the node's user servers are as many as
`docker service ps` shows there, and its GPU series are those
`docker node inspect` advertises.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from . import swarm
from .cluster_page import docker_nodes, node_of_service
from .conftest import METRICS_TOKEN, observe, phase
from .hubclient import start_and_wait
from .swarm import log, wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
FAILING = "mona-nowhere"  # the shared deployment's `nowhere` rule: unplaceable
RUNNING = "mona"
FAILURES = "jupyterhub_swarm_spawn_failures_total"
SCRAPE_CONFIG = """\
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: jupyterhub
    metrics_path: /hub/metrics
    authorization:
      credentials_file: {token_file}
    static_configs:
      - targets: ["{target}"]
"""


@pytest.fixture
def prometheus(hub):
    """A Prometheus of this test's own (port, data and config in a temporary
    directory) scraping the hub through the proxy's public port; its base
    URL. The token is in a file of mode 0600, never in the config or a log."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} missing: run scripts/prometheus-up.sh", pytrace=False)
    work = tempfile.mkdtemp(prefix="jhswarm-prometheus-")
    token_file = os.path.join(work, "token")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(METRICS_TOKEN)
    config = os.path.join(work, "prometheus.yml")
    with open(config, "w") as f:
        f.write(SCRAPE_CONFIG.format(token_file=token_file,
                                     target=f"{hub.address}:{hub.port}"))
    port = swarm.free_port(19090)
    log_path = os.path.join(work, "prometheus.log")
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited ({proc.returncode}): "
                                     + open(log_path).read()[-2000:])
            try:
                return requests.get(base + "/-/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 60, f"prometheus at {base}")
        log(f"prometheus {base} scraping http://{hub.address}:{hub.port}/hub/metrics")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def query(base, expr):
    """{frozenset(labels without __name__ and job/instance): value} of an
    instant query."""
    r = requests.get(base + "/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    found = {}
    for item in body["data"]["result"]:
        labels = {k: v for k, v in item["metric"].items()
                  if k not in ("__name__", "job", "instance")}
        found[frozenset(labels.items())] = float(item["value"][1])
    return found


def one(base, expr):
    """The single value of `expr`, or None while there is none."""
    found = query(base, expr)
    assert len(found) <= 1, (expr, found)
    return next(iter(found.values()), None)


def scraped_after(base, t):
    """Wait for a successful scrape of the hub later than `t` (seconds since
    the epoch): what is read after it is at least that new."""
    wait_for(lambda: (one(base, 'timestamp(up{job="jupyterhub"} == 1)') or 0) > t, 60,
             "a scrape of /hub/metrics after the last step", 1)


def failures(base):
    return {dict(k)["reason"]: v for k, v in query(base, FAILURES).items()}


def servers_on(host):
    """How many user servers docker shows running (or starting) on `host`."""
    return sum(1 for s in swarm.user_services()
               if swarm.docker("service", "ps", "--filter", "desired-state=running",
                               "--format", "{{.Node}}", s).stdout.split()[:1] == [host])


def test_prometheus_scrapes_the_swarm_series(hub, make_user, prometheus):
    base = prometheus
    with phase("metrics: without the token"):
        r = requests.get(f"{hub.base_url}/hub/metrics", timeout=10)
        observe(f"/hub/metrics without a token: HTTP {r.status_code}")
        assert r.status_code == 403, (r.status_code, r.text[:300])
        user = make_user(RUNNING)
        r = user.get("/hub/metrics")
        observe(f"/hub/metrics as a logged-in user: HTTP {r.status_code}")
        assert r.status_code == 403, (r.status_code, r.text[:300])

    with phase("metrics: the first scrapes"):
        wait_for(lambda: one(base, 'up{job="jupyterhub"}') == 1, 120,
                 "prometheus's scrape of the hub to succeed (up == 1)", 1)
        wait_for(lambda: one(base, "jupyterhub_swarm_cluster_up") == 1, 60,
                 "jupyterhub_swarm_cluster_up == 1", 1)
        before = failures(base)
        waits_before = one(base, "jupyterhub_swarm_node_wait_seconds_count")
        observe(f"metrics before the spawns: failures {before}, node waits {waits_before}")
        assert set(before) >= {"unplaceable", "platform", "no_resources", "mount", "image",
                               "timeout"}, before
        assert waits_before is not None

    with phase("metrics: a spawn swarm cannot place"):
        failing = make_user(FAILING)
        r = failing.start_server(FAILING)
        # a failure within the hub's slow_spawn_timeout (10 s) is the POST's
        # answer, a later one the progress stream's last event
        if r.status_code == 500:
            message = r.json()["message"]
        else:
            assert r.status_code == 202, (r.status_code, r.text[:300])
            events = failing.progress_events(FAILING, timeout=120)
            assert events and events[-1].get("failed"), events
            message = events[-1]["message"]
        observe(f"{FAILING}: {message}")
        assert "scheduling constraints not satisfied" in message, message
        failed_at = time.time()
        scraped_after(base, failed_at)
        wait_for(lambda: failures(base).get("unplaceable", 0) >= before["unplaceable"] + 1, 60,
                 "the unplaceable failure in prometheus", 1)
        after = failures(base)
        grown = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        observe(f"metrics after the failed spawn: failures {after} (grown: {grown})")
        assert grown == {"unplaceable": 1}, grown

    with phase("metrics: a spawn that runs"):
        start_and_wait(user)
        host = node_of_service(f"jupyter-{RUNNING}")
        expr = f'jupyterhub_swarm_node_user_servers{{node="{host}"}}'

        def matches_docker():
            expected = servers_on(host)
            got = one(base, expr)
            return expected >= 1 and got == expected and (got, expected)

        got, expected = wait_for(matches_docker, 60, f"{expr} to match docker service ps", 1)
        waits = one(base, "jupyterhub_swarm_node_wait_seconds_count")
        wait_sum = one(base, "jupyterhub_swarm_node_wait_seconds_sum")
        inf = one(base, 'jupyterhub_swarm_node_wait_seconds_bucket{le="+Inf"}')
        gpus = query(base, f'jupyterhub_swarm_node_gpus{{node="{host}"}}')
        waiting = one(base, "jupyterhub_swarm_user_servers_waiting")
        observe(f"metrics while {RUNNING}'s server runs on {host}: user servers {got} "
                f"(docker: {expected}); node waits {waits} (before {waits_before}), "
                f"sum {wait_sum}s; GPUs {dict((tuple(sorted(k)), v) for k, v in gpus.items())}; "
                f"waiting for a node {waiting}")
        assert waits >= waits_before + 1, (waits, waits_before)
        assert inf == waits and wait_sum >= 0, (inf, waits, wait_sum)
        advertised = docker_nodes()[host]["gpus"]
        assert {(dict(k)["kind"], dict(k)["state"]): v for k, v in gpus.items()
                if dict(k)["state"] == "advertised"} == {
            (kind, "advertised"): float(n) for kind, n in advertised.items()}, (gpus, advertised)
        assert waiting == 0, waiting

    with phase("metrics: the server stops"):
        user.stop_server(RUNNING)
        stopped_at = time.time()
        scraped_after(base, stopped_at + 5)  # CLUSTER reads the engine every 5 s at most
        wait_for(lambda: one(base, expr) == servers_on(host), 60,
                 f"{expr} to match docker again after the stop", 1)
        observe(f"metrics after the stop: {expr} = {one(base, expr)}")

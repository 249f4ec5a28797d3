#!/usr/bin/env python3
"""A user's first spawn on a node without the notebook image, with and
without the hub's pre-pull, against a warm spawn; on the three-node test
swarm of scripts/cluster.sh with the tests' registry (scripts/registry-up.sh
cluster: 10.200.0.1:5000 for the nodes, 127.0.0.1:5000 for pushes).

Setup: the cluster up (tests/e2e_cluster/nodes.py), the registry listening
for it, the project image built from the working tree (as bench/overhead.py
does) and pushed with the proxy stand-in, so that the stack is deployed from
registry references without `--resolve-image never`: node1 pulls the hub,
the proxy and docker-api as an operator's deploy does (--hub-from-nodes:
load them into the nodes and deploy them by their local names instead). The
deploys are the cluster harness's (tests/e2e_cluster/conftest.py
ClusterHub, i.e. tests/e2e/deploy.py deploy()). User servers are pinned to
node2 (SPAWNER_CONSTRAINTS=node.labels.calculation_type==cpu), with
SPAWNER_PULL_POLICY=ifnotpresent: the hub checks (and pulls) the image on
the manager, node1, before each spawn, and names it by digest.

A warm-up deploy with the notebook stand-in from the registry pre-pulls it on
node1 and node2 (its ~700 MB of layers: every image below shares them, as
the releases of one image do) and starts and stops the bench user's server
once (its volume exists from then on).

Each cold case gets an image of its own, built beforehand FROM the stand-in
with a new layer of --ballast-mb MB of random (incompressible) data, pushed
to the registry and removed from every node first: a new release of the
image that no node has yet. Rounds alternate the order of the cold cases:

  cold          SPAWNER_PREPULL=false, the stack re-deployed with the new
                image: the first spawn. The hub's check pulls the image on
                node1, then swarm pulls it on node2 (times of both pulls
                from the engines' events, from the spawn's POST).
  cold+prepull  SPAWNER_PREPULL=true, the stack re-deployed with the new
                image: the pre-pull jobs' time (from the deploy and from
                the new hub answering, until the image is on node1 and
                node2 and the jobs are gone), then the first spawn.
  warm          after each cold spawn: the server stopped and started again
                (same user, same image, now on every node).

A spawn's time: `POST /hub/api/users/<u>/server` until the hub reports the
server ready (tests/e2e/hubclient.py start_and_wait). The machine's 2 cores
are shared (another test session may run): compare the ratios, measured in
the same run, not the absolute times.

    .venv/bin/python bench/first_spawn.py --json /tmp/first-spawn.json   # ~20 min
    .venv/bin/python bench/first_spawn.py --quick                        # 1 round, 50 MB

The cluster lock (/run/jhswarm-e2e-cluster.lock) is held throughout; at the
end the stack is removed, the registry's cluster listener stopped, the
built images removed from the host and `scripts/cluster.sh down` run
(--keep: leave the cluster up).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import overhead  # noqa: E402  (its log, statistics, machine and build)

from overhead import _runs, _s, _x, log, median, ratio  # noqa: E402

CASES = ("cold", "cold+prepull", "warm")
USER = "fsbench"
REPO = "jhswarm-bench/first-spawn"
HUB_REPO = "jupyterhub-swarm"
HUB_TAG = "first-spawn"
TARGET = 1.1  # cold+prepull / warm
SETTINGS = {
    "SPAWNER_PULL_POLICY": "ifnotpresent",
    "SPAWNER_CPU_GUARANTEE": "0.01",
    "SPAWNER_MEM_GUARANTEE": "32M",
    "SPAWNER_CONSTRAINTS": "node.labels.calculation_type==cpu",
    "SPAWNER_PREFERENCE": "",
    # no suffix rules: their images would be pre-pulled too
    "SPAWNER_CONSTRAINT_IMAGES": "",
    "SPAWNER_CONSTRAINT_WITH_GPUS": "",
}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/first_spawn.py",
        description="Time a user's first spawn on a node without the notebook image, "
        "with and without SPAWNER_PREPULL, against a warm spawn, on the three-node "
        "test swarm with the tests' registry; prints medians and ratios.")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each has one cold and one cold+prepull spawn, each "
                   "followed by a warm one (default: %(default)s)")
    p.add_argument("--ballast-mb", type=int, default=350,
                   help="MB of random data in each cold image's own layer (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 50 MB")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds a spawn or the pre-pull may take (default: %(default)s)")
    p.add_argument("--hub-from-nodes", action="store_true",
                   help="load the hub and proxy images into the nodes (cluster.sh load) "
                   "and deploy them with --resolve-image never, instead of from the registry")
    p.add_argument("--no-build", action="store_true",
                   help="do not build the project image; use --project-image as it is")
    p.add_argument("--project-image", default=overhead.BENCH_IMAGE,
                   help="tag of the project image (default: %(default)s)")
    p.add_argument("--base-image", default=overhead.STANDIN_BASE,
                   help="BASE_IMAGE of the build (default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="leave the cluster up at the end (the stack is removed)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw results here")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.ballast_mb = 1, 50
    if args.rounds < 1 or args.ballast_mb < 1 or args.timeout <= 0:
        p.error("--rounds, --ballast-mb and --timeout must be at least 1")
    return args


def schedule(rounds):
    """The cold cases in run order: [(round, case)], the order alternating
    per round so that neither case always comes first."""
    out = []
    for r in range(rounds):
        pair = ("cold", "cold+prepull") if r % 2 == 0 else ("cold+prepull", "cold")
        out += [(r, case) for case in pair]
    return out


# -- results (pure, unit-tested) -----------------------------------------------------


def summarize(samples):
    """samples: [{"case": ..., "spawn": seconds, ...}] -> per case the runs
    and their median; the ratios of both cold cases' medians to warm's; the
    pre-pull jobs' median time; the median pulls of a cold spawn."""
    by_case = {c: [s["spawn"] for s in samples if s["case"] == c and s.get("spawn") is not None]
               for c in CASES}
    medians = {c: median(v) for c, v in by_case.items()}
    prepull = [s for s in samples if s["case"] == "cold+prepull"]

    def med(rows, key):
        return median([r[key] for r in rows if r.get(key) is not None])

    cold = [s for s in samples if s["case"] == "cold"]
    return {
        "runs": by_case,
        "median": medians,
        "ratio": {"cold": ratio(medians["cold"], medians["warm"]),
                  "cold+prepull": ratio(medians["cold+prepull"], medians["warm"])},
        "prepull_from_deploy": med(prepull, "prepull_from_deploy"),
        "prepull_from_hub": med(prepull, "prepull_from_hub"),
        "cold_manager_pull": med(cold, "manager_pull"),
        "cold_worker_pull": med(cold, "worker_pull"),
        "failed": [s for s in samples if s.get("error")],
    }


def table(summary, ballast_mb, target=TARGET):
    """The markdown table of a summary, and the runs."""
    m, r = summary["median"], summary["ratio"]
    n = {c: len(v) for c, v in summary["runs"].items()}
    ok = r["cold+prepull"] is not None and r["cold+prepull"] <= target
    rows = [
        "| case | first spawn (median) | against warm | target |",
        "|---|---|---|---|",
        f"| cold, `SPAWNER_PREPULL=false` ({n['cold']} runs) | {_s(m['cold'])} "
        f"| {_x(r['cold'])} | - |",
        f"| cold, `SPAWNER_PREPULL=true`, after the pre-pull ({n['cold+prepull']} runs) "
        f"| {_s(m['cold+prepull'])} | {_x(r['cold+prepull'])} "
        f"| ≤ {target:.2f}× {'(met)' if ok else '(NOT met)'} |",
        f"| warm: the same server again ({n['warm']} runs) | {_s(m['warm'])} | 1.00× | - |",
        "",
        f"- image: the notebook stand-in plus a layer of {ballast_mb} MB of random data, "
        "new for every cold run",
        f"- pre-pull jobs (median): {_s(summary['prepull_from_deploy'], 1)} from "
        f"`docker stack deploy`, {_s(summary['prepull_from_hub'], 1)} after the new hub "
        "answered, until the image was on node1 and node2 and the jobs were gone",
        f"- cold without pre-pull (median, from the POST): the hub's pull on the manager done "
        f"at {_s(summary['cold_manager_pull'], 1)}, swarm's pull on the worker done at "
        f"{_s(summary['cold_worker_pull'], 1)}",
    ]
    for case in CASES:
        rows.append(f"- {case}: {_runs(summary['runs'][case])}")
    for f in summary["failed"]:
        rows.append(f"- FAILED: round {f.get('round')}, {f['case']}: {f['error'][:300]}")
    return "\n".join(rows)


# -- the cluster --------------------------------------------------------------------------


class FirstSpawn:
    """The cluster, the registry, the hub (ClusterHub) and the images."""

    def __init__(self, args):
        sys.path.insert(0, str(ROOT / "tests"))
        from e2e import swarm
        from e2e.test_26_registry import registry
        from e2e_cluster import conftest as harness
        from e2e_cluster import nodes
        from e2e_cluster import test_09_registry_prepull as t09

        self.args, self.swarm, self.registry = args, swarm, registry
        self.harness, self.nodes, self.t09 = harness, nodes, t09
        self.cluster = None
        self.hub = None
        self.built = []  # host refs to remove at the end

    # -- setup ------------------------------------------------------------------------
    def up(self):
        log("cluster: scripts/cluster.sh up")
        self.nodes.cluster_sh("up")
        self.cluster = c = self.nodes.Cluster.from_script()
        c.read_hostnames()
        log("registry: registry-up.sh cluster (10.200.0.1:5000 for the nodes)")
        self.registry("cluster")
        self.addr = self.t09.node_addr(c)
        with c.target():
            self.swarm.cleanup()
        c.remove_user_volumes()
        for node in (c.manager, c.cpu_node):
            self.forget(node)

    def hub_images(self):
        """(JUPYTERHUB_IMAGE, PROXY_IMAGE, resolve_image) of the deploys."""
        a = self.args
        if a.hub_from_nodes:
            proxy = self.harness.PROXY_IMAGE
            log(f"loading {a.project_image} and {proxy} into the nodes")
            self.nodes.cluster_sh("load", a.project_image, proxy, timeout=1800)
            return a.project_image, proxy, "never"
        push = f"{self.t09.PUSH_ADDR}/{HUB_REPO}:{HUB_TAG}"
        log(f"pushing {a.project_image} as {push}")
        self.swarm.docker("tag", a.project_image, push)
        self.swarm.docker("push", push, timeout=900)
        self.built.append(push)
        # registry-up.sh pushed the proxy stand-in there
        proxy = f"{self.addr}/{self.harness.PROXY_IMAGE}"
        return f"{self.addr}/{HUB_REPO}:{HUB_TAG}", proxy, None

    def build_images(self, plan):
        """One image per cold run, pushed; {(round, case): ref at the nodes}."""
        out = {}
        stamp = time.strftime("%H%M%S")
        for r, case in plan:
            tag = f"r{r}-{'pp' if case == 'cold+prepull' else 'np'}-{stamp}"
            t0 = time.monotonic()
            ref = self.t09.build_and_push(
                tag, REPO, f"head -c {self.args.ballast_mb}M /dev/urandom > /opt/ballast")
            self.built.append(ref)
            out[(r, case)] = f"{self.addr}/{REPO}:{tag}"
            log(f"built and pushed {ref} in {time.monotonic() - t0:.0f}s")
        return out

    def images(self, node):
        """Ids of the node's images of REPO (by id: a worker's copy pulled
        by digest has no tag)."""
        out = self.cluster.docker(node, "image", "ls", "--no-trunc",
                                  "--format", "{{.ID}} {{.Repository}}").stdout
        return {i for i, repo in (line.split() for line in out.splitlines() if line.strip())
                if repo == f"{self.addr}/{REPO}"}

    def forget(self, node):
        """Remove every image of REPO from the node: first the containers
        still made from one (a stopped server's task container outlives its
        service for a moment, and keeps its image), then the images; wait
        until the node lists none."""
        c = self.cluster

        def gone():
            ids = self.images(node)
            for image in ids:
                out = c.docker(node, "ps", "-aq", "--filter", f"ancestor={image}").stdout
                for container in out.split():
                    c.docker(node, "rm", "-f", container, check=False)
                c.docker(node, "image", "rm", "-f", image, check=False)
            return not self.images(node)

        self.swarm.wait_for(gone, 120, f"no image of {REPO} left on {node}", 1)

    def has(self, node, ref):
        """The node holds ref: by its tag, or (a pull by digest names no
        tag) by an image of REPO: forget() leaves none before each case."""
        return self.t09.has_image(self.cluster, node, ref) or bool(self.images(node))

    def configure(self, image, prepull):
        c = self.cluster
        settings = {**SETTINGS, "SPAWNER_NOTEBOOK_IMAGE": image,
                    "SPAWNER_PREPULL": "true" if prepull else "false",
                    "SPAWNER_PLATFORM": "%s:%s" % c.platform(),
                    "JUPYTERHUB_IMAGE": self.hub_image, "PROXY_IMAGE": self.proxy_image}
        self.hub.configure(settings)

    def wait_prepulled(self, ref):
        c = self.cluster
        where = (c.manager, c.cpu_node)
        self.swarm.wait_for(lambda: all(self.has(n, ref) for n in where), self.args.timeout,
                            f"the pre-pull jobs to bring {ref} to {', '.join(where)}", 1)
        pulled = time.monotonic()
        with c.target():
            self.swarm.wait_for(lambda: not [
                s for s in self.swarm.service_names() if s.startswith("jupyter-prepull")],
                120, "the finished pre-pull jobs removed", 1)
        return pulled, time.monotonic()

    def pulls(self, node, since, repo_ref):
        """Unix times of the node engine's pulls of repo_ref since `since`."""
        return [t for t, image in self.t09.pull_events(self.cluster, node, since)
                if image.startswith(repo_ref)]

    def spawn(self):
        """(seconds until ready, unix time of the POST, the server's node),
        then the server stopped."""
        from e2e.hubclient import start_and_wait

        c, client = self.cluster, self.hub.user(USER)
        with c.target():
            t_wall = time.time()
            _, took = start_and_wait(client, USER, timeout=self.args.timeout)
            node = c.node_of(f"jupyter-{USER}")
            client.stop_server(USER)
            self.swarm.wait_for(lambda: f"jupyter-{USER}" not in self.swarm.user_services(),
                                120, "the server's service removed", 0.5)
        return took, t_wall, node

    # -- the cases -------------------------------------------------------------------------
    def warm_up(self):
        base = f"{self.addr}/{self.harness.NOTEBOOK_IMAGE}"  # pushed by registry-up.sh
        log(f"warm-up: deploy with {base}, pre-pulled on node1 and node2, one spawn")
        t0 = time.monotonic()
        self.configure(base, True)
        self.wait_prepulled(base)
        took, _, node = self.spawn()
        log(f"warm-up done in {time.monotonic() - t0:.0f}s (spawn {took:.1f}s on {node})")

    def cold(self, r, case, ref):
        c = self.cluster
        for node in c.nodes:
            self.forget(node)
        prepull = case == "cold+prepull"
        row = {"round": r, "case": case, "image": ref}
        t0 = time.monotonic()
        self.configure(ref, prepull)
        hub_up = time.monotonic()
        row["deploy"] = hub_up - t0
        if prepull:
            pulled, gone = self.wait_prepulled(ref)
            row["prepull_from_deploy"] = pulled - t0
            row["prepull_from_hub"] = pulled - hub_up
            row["prepull_jobs_gone"] = gone - t0
        else:
            assert not any(self.has(n, ref) for n in c.nodes), f"{ref} on a node before the spawn"
        row["spawn"], t_wall, row["node"] = self.spawn()
        repo_ref = ref.rsplit(":", 1)[0]
        for key, node in (("manager_pull", c.manager), ("worker_pull", c.cpu_node)):
            times = self.pulls(node, t_wall - 1, repo_ref)
            row[key] = (max(times) - t_wall) if times else None
        log(f"round {r}, {case}: first spawn {row['spawn']:.1f}s on {row['node']}"
            + (f" (pre-pull {row['prepull_from_deploy']:.1f}s from the deploy, "
               f"{row['prepull_from_hub']:.1f}s from the hub answering)" if prepull else "")
            + f"; pulls during the spawn done at: manager {_s(row['manager_pull'], 1)}, "
            f"worker {_s(row['worker_pull'], 1)}")
        warm = {"round": r, "case": "warm", "after": case, "image": ref}
        warm["spawn"], _, warm["node"] = self.spawn()
        log(f"round {r}, warm after {case}: {warm['spawn']:.1f}s on {warm['node']}")
        return [row, warm]

    # -- teardown --------------------------------------------------------------------------
    def down(self):
        c = self.cluster
        try:
            if c is not None:
                with c.target():
                    self.swarm.cleanup()
                c.remove_user_volumes()
        finally:
            try:
                self.registry("cluster-stop")
            finally:
                for ref in self.built:
                    self.swarm.docker("image", "rm", ref, check=False)
                if self.args.keep:
                    log("--keep: leaving the cluster up (scripts/cluster.sh down)")
                else:
                    log("cluster: scripts/cluster.sh down")
                    self.nodes.cluster_sh("down")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.no_build:
        overhead.build(args)
    results = {"machine": overhead.machine(), "args": vars(args), "samples": []}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))

    b = FirstSpawn(args)
    log("taking the cluster lock (another cluster session may hold it)")
    lock = b.harness.file_lock(b.harness.LOCK_FILE, "cluster session")
    started = time.monotonic()
    try:
        b.up()
        b.hub_image, b.proxy_image, resolve = b.hub_images()
        results["hub_image"], results["proxy_image"] = b.hub_image, b.proxy_image
        results["hub_from_registry"] = resolve is None
        plan = schedule(args.rounds)
        images = b.build_images(plan)
        b.hub = b.harness.ClusterHub(b.cluster, resolve_image=resolve)
        b.warm_up()
        for r, case in plan:
            try:
                results["samples"] += b.cold(r, case, images[(r, case)])
            except Exception as e:  # the run goes on; the table says what failed
                import traceback

                log(f"round {r}, {case} failed:\n{traceback.format_exc()}")
                results["samples"].append({"round": r, "case": case, "error": f"{e}"})
            save()
    finally:
        log(f"measured in {time.monotonic() - started:.0f}s; tearing down")
        try:
            b.down()
        finally:
            lock.close()
    results["summary"] = summary = summarize(results["samples"])
    save()
    m = results["machine"]
    print(f"\n{m['date']}: nproc {m['nproc']}, memory {m['memory']}, docker {m['docker']}, "
          f"kernel {m['kernel']}, git {m['git']}; hub {results['hub_image']} "
          f"({'from the registry' if results['hub_from_registry'] else 'loaded into the nodes'})\n")
    print(table(summary, args.ballast_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())

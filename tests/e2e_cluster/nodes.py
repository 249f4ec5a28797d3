"""The 3-node test swarm of scripts/cluster.sh, seen from the tests: its
layout (read from `cluster.sh env`), per-node docker, and what a user's
server got: the node it runs on, its service spec, its container's
environment.

Service-level helpers go through tests/e2e/swarm.py, which must point at the
manager (Cluster.target()); container-level ones ask the node's own engine.
"""

import json
import shlex
import subprocess
from dataclasses import dataclass, field

from e2e import swarm
from e2e.swarm import ROOT, log

GPU_ENV = "DOCKER_RESOURCE_NVIDIA-GPU"
# docker info / node inspect report the kernel's name of the architecture;
# images and SPAWNER_PLATFORM use the Go name
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def cluster_sh(*args, timeout=600):
    """Run scripts/cluster.sh; fail with its output if it fails."""
    cmd = ["bash", str(ROOT / "scripts" / "cluster.sh"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[1:])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


@dataclass
class Cluster:
    env: dict  # CLUSTER_* from `cluster.sh env`
    hostnames: dict = field(default_factory=dict)  # swarm node ID -> hostname

    @classmethod
    def from_script(cls):
        env = {}
        for line in cluster_sh("env").stdout.splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                env[name] = shlex.split(value)[0] if value else ""
        return cls(env)

    # -- layout ----------------------------------------------------------------
    @property
    def manager(self):
        return self.env["CLUSTER_MANAGER"]

    @property
    def manager_sock(self):
        return self.env["CLUSTER_MANAGER_SOCK"]

    @property
    def manager_addr(self):
        return self.env["CLUSTER_MANAGER_ADDR"]

    @property
    def nodes(self):
        return self.env["CLUSTER_NODES"].split()

    @property
    def workers(self):
        return [n for n in self.nodes if n != self.manager]

    @property
    def cpu_node(self):
        return self.env["CLUSTER_CPU_NODE"]

    @property
    def gpu_node(self):
        return self.env["CLUSTER_GPU_NODE"]

    @property
    def gpu_ids(self):
        return self.env["CLUSTER_GPU_IDS"].split(",")

    def labels(self, node):
        return dict(kv.split("=", 1) for kv in self.env[f"CLUSTER_{node.upper()}_LABELS"].split())

    def sock(self, node):
        return self.env[f"CLUSTER_{node.upper()}_SOCK"]

    # -- engines ----------------------------------------------------------------
    def target(self):
        """tests/e2e/swarm.py helpers talk to the manager inside the block."""
        return swarm.target(f"unix://{self.manager_sock}", self.manager_addr)

    def docker(self, node, *args, check=True, timeout=180):
        """The docker CLI against one node's own engine."""
        cmd = [swarm.DOCKER, "-H", f"unix://{self.sock(node)}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise swarm.DockerError(
                f"[{node}] docker {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def read_hostnames(self):
        with self.target():
            out = swarm.docker("node", "ls", "--format", "{{.ID}} {{.Hostname}}").stdout
        self.hostnames = dict(line.split() for line in out.splitlines() if line.strip())
        return self.hostnames

    def platform(self):
        """(arch, os) of the nodes as SPAWNER_PLATFORM spells them."""
        with self.target():
            node = swarm.docker_json("node", "inspect", "self")[0]
        p = node["Description"]["Platform"]
        return GO_ARCH.get(p["Architecture"], p["Architecture"]), p["OS"]

    def node_state(self, hostname):
        """The manager's view of a node: "ready", "down", "unknown"."""
        return self.docker(self.manager, "node", "inspect", hostname,
                           "--format", "{{.Status.State}}").stdout.strip()

    # -- a user's server ----------------------------------------------------------
    def running_task(self, service):
        with self.target():
            task = swarm.running_task(service)
        assert task, f"no running task of {service}"
        return task

    def node_of(self, service):
        """Hostname of the node running the service's task."""
        task = self.running_task(service)
        return self.hostnames[task["NodeID"]]

    def spec_of(self, service):
        with self.target():
            found = swarm.service_inspect(service)
        assert found, f"no service {service}"
        return found["Spec"]

    def container_env(self, service):
        """The environment of the server's process (PID 1 of its container),
        read on the node that runs it."""
        task = self.running_task(service)
        node = self.hostnames[task["NodeID"]]
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        raw = self.docker(node, "exec", container, "cat", "/proc/1/environ").stdout
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    def reach_from(self, service, targets):
        """What the server's container can reach (swarm.REACH), run on the
        node that runs it."""
        task = self.running_task(service)
        node = self.hostnames[task["NodeID"]]
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        out = self.docker(node, "exec", container, "python3", "-c", swarm.REACH,
                          json.dumps(targets)).stdout
        return json.loads(out)

    def gpus_of(self, service):
        """The GPU ids swarm gave the server (its DOCKER_RESOURCE_NVIDIA-GPU)."""
        value = self.container_env(service).get(GPU_ENV, "")
        return sorted(v for v in value.split(",") if v)

    def containers_of(self, service):
        """{node: [container ids]} of the service's containers, on every node."""
        found = {}
        for node in self.nodes:
            ids = self.docker(
                node, "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={service}"
            ).stdout.split()
            if ids:
                found[node] = ids
        return found

    def volume_file(self, node, volume, path, image):
        """The text of `path` inside a local volume on one node, or None."""
        proc = self.docker(
            node, "run", "--rm", "--network", "none", "--entrypoint", "cat",
            "-v", f"{volume}:/v:ro", image, f"/v/{path}", check=False,
        )
        return proc.stdout if proc.returncode == 0 else None

    def volumes(self, node, prefix=swarm.USER_VOLUME_PREFIX):
        out = self.docker(node, "volume", "ls", "-q").stdout.split()
        return [v for v in out if v.startswith(prefix)]

    def remove_user_volumes(self):
        """Per-user volumes on every node (left by a run with
        JHSWARM_CLUSTER_KEEP=1); the manager's go with swarm.cleanup()."""
        for node in self.workers:
            for volume in self.volumes(node):
                self.docker(node, "volume", "rm", "-f", volume, check=False)
                log(f"[{node}] removed leftover volume {volume}")


def spec_image(spec):
    return spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]


def spec_constraints(spec):
    return sorted(spec["TaskTemplate"].get("Placement", {}).get("Constraints") or [])


def spec_preferences(spec):
    return spec["TaskTemplate"].get("Placement", {}).get("Preferences") or []


def spec_platforms(spec):
    return spec["TaskTemplate"].get("Placement", {}).get("Platforms") or []


def spec_generic_resources(spec):
    reservations = spec["TaskTemplate"].get("Resources", {}).get("Reservations") or {}
    return reservations.get("GenericResources") or []


spec_env = swarm.spec_env


def gpu_reservation(count):
    return [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": count}}]


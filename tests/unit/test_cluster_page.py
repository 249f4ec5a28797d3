"""cluster_rows: the cluster page's rows from docker's node, service and
task lists (shaped as docker's API returns them; written by hand here)."""

import asyncio

from jupyterhub_swarm import ClusterView, NodeRow, ServerRow, cluster_rows

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CREATED = "2027-01-15T07:50:00.000000789Z"  # 600 s before NOW (docker: nanoseconds)

NODES = [
    {"ID": "n2", "Spec": {"Role": "worker", "Availability": "drain", "Labels": {"gpu": "yes", "a": "1"}},
     "Status": {"State": "ready"},
     "Description": {"Hostname": "gpu-box", "Platform": {"OS": "linux", "Architecture": "x86_64"},
                     "Resources": {"NanoCPUs": 8_000_000_000, "MemoryBytes": 32 * 2**30,
                                   "GenericResources": [
                                       {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}]}}},
    {"ID": "n1", "Spec": {"Role": "manager", "Availability": "active"},
     "Status": {"State": "down"},
     "Description": {"Hostname": "arm-pi", "Platform": {"OS": "linux", "Architecture": "aarch64"},
                     "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 4 * 2**30}}},
]
SERVICES = [
    {"ID": "s1", "CreatedAt": CREATED, "Spec": {"Name": "jupyter-ann"}},
    {"ID": "s2", "CreatedAt": CREATED, "Spec": {"Name": "jupyter-old"}},  # not this hub's
    {"ID": "s3", "CreatedAt": CREATED, "Spec": {"Name": "jhub_proxy"}},
    {"ID": "s4", "CreatedAt": CREATED, "Spec": {"Name": "jupyter-bob"}},
]


def task(service, node, state="running", desired="running", cpus=0, mem=0, gpus=0,
         image="nb:1@sha256:abc"):
    reservations = {"NanoCPUs": cpus, "MemoryBytes": mem}
    if gpus:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpus}}]
    return {"ServiceID": service, "NodeID": node, "DesiredState": desired,
            "Status": {"State": state},
            "Spec": {"ContainerSpec": {"Image": image}, "Resources": {"Reservations": reservations}}}


def test_nodes_with_what_they_advertise_and_what_is_reserved():
    tasks = [task("s1", "n2", cpus=500_000_000, mem=2**30, gpus=1),
             task("s3", "n2", cpus=100_000_000, mem=2**29),
             task("s1", "n2", state="shutdown", desired="shutdown", gpus=1, cpus=10**9),  # gone
             task("s2", "n1", state="starting")]
    nodes, waiting = cluster_rows(NODES, SERVICES, tasks, {"jupyter-ann": ("ann", "")}, NOW)
    assert [n.hostname for n in nodes] == ["arm-pi", "gpu-box"]
    pi, gpu = nodes
    assert (pi.role, pi.availability, pi.state, pi.platform) == ("manager", "active", "down", "linux/aarch64")
    assert (gpu.role, gpu.availability, gpu.state, gpu.platform) == ("worker", "drain", "ready", "linux/x86_64")
    assert gpu.labels == (("a", "1"), ("gpu", "yes"))
    assert (gpu.cpus, gpu.memory) == (8.0, 32 * 2**30)
    assert gpu.cpus_reserved == 0.6 and gpu.memory_reserved == 2**30 + 2**29
    assert gpu.generic == (("NVIDIA-GPU", 2, 1),)
    assert pi.generic == () and pi.cpus_reserved == 0
    assert gpu.servers == (ServerRow("ann", "", "jupyter-ann", "nb:1", "running", 600.0),)
    # a user service the hub does not know: shown, without a user
    assert pi.servers == (ServerRow("", "", "jupyter-old", "nb:1", "starting", 600.0),)
    assert waiting == ()


def test_a_server_not_on_a_node_yet_is_waiting():
    tasks = [task("s4", "", state="pending")]
    nodes, waiting = cluster_rows(NODES, SERVICES, tasks, {"jupyter-bob": ("bob", "gpu")}, NOW)
    assert waiting == (ServerRow("bob", "gpu", "jupyter-bob", "nb:1", "pending", 600.0),)
    assert all(n.servers == () for n in nodes)


def test_named_gpus_count_one_each():
    node = {**NODES[0], "Description": {**NODES[0]["Description"], "Resources": {
        "GenericResources": [{"NamedResourceSpec": {"Kind": "gpu", "Value": "GPU-1"}},
                             {"NamedResourceSpec": {"Kind": "gpu", "Value": "GPU-2"}}]}}}
    (row,), _ = cluster_rows([node], [], [], {}, NOW)
    assert isinstance(row, NodeRow) and row.generic == (("gpu", 2, 0),)


class CountingEngine:
    """Stands in for docker's client in the cache test only: counts reads."""

    def __init__(self):
        self.calls = 0

    def nodes(self):
        self.calls += 1
        return []

    def services(self):
        return []

    def tasks(self, filters):
        assert filters == {"desired-state": "running"}
        return []


def test_many_admins_at_once_cause_one_read():
    engine = CountingEngine()
    view = ClusterView(max_age=60, client=engine)

    async def twenty():
        return await asyncio.gather(*(view.get() for _ in range(20)))

    reads = asyncio.run(twenty())
    assert engine.calls == 1 and view.reads == 1
    assert len({id(r) for r in reads}) == 1  # all twenty got the same read


def test_a_read_older_than_max_age_is_renewed():
    engine = CountingEngine()
    view = ClusterView(max_age=0, client=engine)

    async def two():
        await view.get()
        await view.get()

    asyncio.run(two())
    assert engine.calls == 2

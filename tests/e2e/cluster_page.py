"""Reading the hub's cluster page (/hub/cluster, templates/cluster.html) as
the tests compare it with docker's own view: a plain module for the
single-node and the cluster tests."""

import html
import re

from . import swarm


def _field(block, cls):
    m = re.search(rf'class="[^"]*\b{cls}\b[^"]*"[^>]*>(.*?)</', block, re.S)
    return html.unescape(m.group(1).strip()) if m else None


def read_page(text):
    """{hostname: {"role", "availability", "state", "platform", "generic":
    {kind: text}, "servers": {service: (user, state)}}} of the page."""
    nodes = {}
    starts = [m.start() for m in re.finditer(r'<div class="card mb-3 node"', text)] + [len(text)]
    for a, b in zip(starts, starts[1:]):
        block = text[a:b]
        host = html.unescape(re.search(r'data-hostname="([^"]*)"', block).group(1))
        servers = {}
        for row in re.findall(r'<tr class="server" data-service="([^"]*)">(.*?)</tr>', block, re.S):
            servers[html.unescape(row[0])] = (_field(row[1], "user"), _field(row[1], "state"))
        nodes[host] = {
            "role": _field(block, "role"), "availability": _field(block, "availability"),
            "state": _field(block, "state"), "platform": _field(block, "platform"),
            "generic": {k: html.unescape(v.strip()) for k, v in re.findall(
                r'class="col-sm-4 generic" data-kind="([^"]*)">(.*?)</dd>', block, re.S)},
            "servers": servers,
        }
    return nodes


def docker_nodes():
    """The same facts from `docker node inspect` of every node."""
    ids = swarm.docker("node", "ls", "-q").stdout.split()
    seen = {}
    for node in swarm.docker_json("node", "inspect", *ids):
        desc, spec = node["Description"], node["Spec"]
        gpus = {}
        for r in desc["Resources"].get("GenericResources") or ():
            # a count (NVIDIA-GPU=2) or one GPU by its id (NVIDIA-GPU=GPU-1)
            if "DiscreteResourceSpec" in r:
                kind, n = r["DiscreteResourceSpec"]["Kind"], r["DiscreteResourceSpec"]["Value"]
            else:
                kind, n = r["NamedResourceSpec"]["Kind"], 1
            gpus[kind] = gpus.get(kind, 0) + n
        seen[desc["Hostname"]] = {
            "role": spec["Role"], "availability": spec["Availability"],
            "state": node["Status"]["State"],
            "platform": f"{desc['Platform']['OS']}/{desc['Platform']['Architecture']}",
            "gpus": gpus,
        }
    return seen


def node_of_service(service):
    """Hostname of the node running `service`'s task (docker service ps)."""
    return swarm.docker("service", "ps", "--filter", "desired-state=running",
                        "--format", "{{.Node}}", service).stdout.split()[0]

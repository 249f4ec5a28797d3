"""Internal TLS with a server on another node than the hub.

dockerspawner's own way of handing a server its certificates is a docker
volume on the hub's node (node1), which a task on node2 never sees. Here
the certificates travel as swarm secrets: `gil-cpu` (pinned to node2 by its
suffix rule) starts, the proxy on node1 reaches it over TLS by its service
name, the user works with it, and its secrets go when it stops.
"""

import pytest

from e2e import swarm

from .conftest import observe, phase, placement_settings, start_all

SSL_PATH = "/data/internal-ssl"
LABEL = "jupyterhub-swarm.server"


@pytest.fixture(scope="module")
def hub(cluster_hub, cluster):
    return cluster_hub.configure({**placement_settings(cluster), "HUB_INTERNAL_SSL_PATH": SSL_PATH})


def secrets_of(service):
    out = swarm.docker("secret", "ls", "--filter", f"label={LABEL}={service}",
                       "--format", "{{.Name}}").stdout
    return out.split()


def test_server_on_a_worker_speaks_tls_with_secrets(hub, cluster):
    gil, name, service = hub.user("gil-cpu"), "gil-cpu", "jupyter-gil-2dcpu"

    with phase("cluster TLS: gil-cpu starts on node2 with its certificates as secrets"):
        start_all({name: gil})
        node = cluster.node_of(service)
        route = swarm.proxy_routes()[f"/user/{name}"]["target"]
        spec = swarm.service_inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
        observe(f"cluster TLS: gil-cpu on {node}, proxy route {route}, "
                f"secrets {[s['File']['Name'] for s in spec.get('Secrets') or []]}")
        assert node == cluster.cpu_node and node != cluster.node_of(swarm.HUB_SERVICE)
        assert route.startswith(f"https://{service}-") and route.endswith(":8888"), route
        assert len(spec.get("Secrets") or []) == 3
        assert not [m for m in spec.get("Mounts") or [] if "ssl" in m.get("Source", "")]

    with phase("cluster TLS: the user works with the server through the proxy"):
        gil.open_server()
        gil.put_file("tls-on-node2.txt", "over TLS")
        assert gil.get_file("tls-on-node2.txt") == "over TLS"

    with phase("cluster TLS: stopping removes the secrets"):
        assert len(secrets_of(service)) == 3
        gil.stop_server(name)
        swarm.wait_for(lambda: not secrets_of(service), 30, f"the secrets of {service} to go")

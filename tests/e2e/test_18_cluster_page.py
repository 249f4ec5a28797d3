"""The cluster page (/hub/cluster): for admins, every node as
`docker node inspect` has it and the user servers on it as
`docker service ps` places them; 403 for a user; a link in the admin's
navigation bar only."""

from . import swarm
from .cluster_page import docker_nodes, node_of_service, read_page
from .conftest import observe, phase
from .hubclient import start_and_wait

NAME = "clara"
SERVICE = "jupyter-clara"


def test_admins_see_the_nodes_and_servers_users_get_403(hub, admin, make_user):
    user = make_user(NAME)
    start_and_wait(user)
    with phase("cluster page: as the admin"):
        r = admin.get("/hub/cluster")
        assert r.status_code == 200, (r.status_code, r.text[:500])
        page = read_page(r.text)
        docker = docker_nodes()
        observe(f"cluster page: nodes {page}")
        assert set(page) == set(docker), (page, docker)
        for host, facts in docker.items():
            for key in ("role", "availability", "state", "platform"):
                assert page[host][key] == facts[key], (host, key, page[host], facts)
            assert page[host]["generic"] == {
                k: f"0 of {v} reserved" for k, v in facts["gpus"].items()}, (page[host], facts)
        where = node_of_service(SERVICE)
        assert page[where]["servers"].get(SERVICE) == (NAME, "running"), page[where]
        assert 'href="/hub/cluster"' in admin.get("/hub/home").text

    with phase("cluster page: as a user"):
        r = user.get("/hub/cluster")
        observe(f"cluster page: a user gets {r.status_code}")
        assert r.status_code == 403, (r.status_code, r.text[:300])
        assert 'href="/hub/cluster"' not in user.get("/hub/home").text
        user.stop_server(NAME)
    assert SERVICE not in swarm.user_services()

"""Profiles (SPAWNER_PROFILES, SPAWNER_PROFILE_*) on the real swarm.

The shared deployment offers `pcpu` (the :base image, no constraint of its
own) to group `lab` and `pgpu` (the :gpu image, the node label
calculation_type==gpu, 1 NVIDIA-GPU) to group `gpu`; the admin makes the
groups through the hub's API. `pgina` (groups gpu and lab) sees both on the spawn
page and asks the API for pgpu: her service has that image, those
constraints and the GPU reservation (the node has no GPU: it stays pending
and is stopped). `pleo` (group lab) is refused pgpu with 400 naming pcpu,
and no service is made; pcpu then runs. `pcarol-base` (a suffix rule,
group gpu) is refused any profile and still gets her rule.
"""

import time

from . import swarm
from .conftest import BASE_RULE_IMAGE, GPU_IMAGE, SETTINGS, phase
from .hubclient import start_and_wait
from .swarm import constraints_of, generic_resources, image_of, log, spec_of, wait_for

GLOBAL = SETTINGS["SPAWNER_CONSTRAINTS"]  # node.role==manager
LABEL = "node.labels.calculation_type==gpu"


def choose(client, name, profile):
    return client.api("POST", f"/users/{name}/server", json={"profile": profile})


def add_to_group(admin, group, *users):
    r = admin.api("POST", f"/groups/{group}")
    assert r.status_code in (201, 409), (r.status_code, r.text)  # 409: made by an earlier run
    r = admin.api("POST", f"/groups/{group}/users", json={"users": list(users)})
    assert r.status_code == 200, (r.status_code, r.text)


def assert_no_server(client, name, service):
    time.sleep(3)  # a spawn the hub had begun would have made the service by now
    assert service not in swarm.user_services(), swarm.user_services()
    model = client.user_model(name)
    assert not model.get("servers") and not model.get("pending"), model


def test_profiles_by_group_through_the_api(hub, admin, make_user):
    with phase("profiles: users and groups"):
        gina, leo, carol = make_user("pgina"), make_user("pleo"), make_user("pcarol-base")
        add_to_group(admin, "gpu", "pgina", "pcarol-base")
        add_to_group(admin, "lab", "pleo", "pgina")

    with phase("profiles: the spawn page's form"):
        page = gina.get("/hub/spawn/pgina")
        assert page.status_code == 200, page.status_code
        assert 'name="profile" id="profile-pcpu" value="pcpu"' in page.text
        assert 'name="profile" id="profile-pgpu" value="pgpu"' in page.text
        assert "GPU &lt;1 card&gt; &amp; CUDA" in page.text
        assert "<1 card>" not in page.text
        assert GPU_IMAGE in page.text and "1 GPU reserved" in page.text
        leo_page = leo.get("/hub/spawn/pleo")
        assert 'value="pcpu"' in leo_page.text and 'value="pgpu"' not in leo_page.text
        assert "jupyter-pgina" not in swarm.user_services()  # showing the form spawns nothing

    with phase("profiles: pgina chooses pgpu"):
        r = choose(gina, "pgina", "pgpu")
        assert r.status_code == 202, (r.status_code, r.text)  # no GPU on the node: pending
        service = "jupyter-pgina"
        wait_for(lambda: swarm.service_inspect(service), 30, f"{service} created")
        spec = spec_of(service)
        assert image_of(spec) == GPU_IMAGE
        assert constraints_of(spec) == sorted([GLOBAL, LABEL])
        assert generic_resources(spec) == [
            {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}], generic_resources(spec)
        gina.stop_server("pgina")
        wait_for(lambda: service not in swarm.user_services(), 60, f"{service} removed")

    with phase("profiles: pleo is refused pgpu"):
        for asked in ("pgpu", "nosuch"):
            r = choose(leo, "pleo", asked)
            assert r.status_code == 400, (r.status_code, r.text)
            message = r.json()["message"]
            assert f"unknown profile '{asked}': you may choose pcpu" in message, message
            assert_no_server(leo, "pleo", "jupyter-pleo")

    with phase("profiles: pleo's pcpu runs"):
        r = choose(leo, "pleo", "pcpu")
        assert r.status_code in (201, 202), (r.status_code, r.text)
        leo.wait_ready("pleo")
        spec = spec_of("jupyter-pleo")
        assert image_of(spec) == BASE_RULE_IMAGE
        assert constraints_of(spec) == [GLOBAL]
        assert generic_resources(spec) == []
        leo.stop_server("pleo")

    with phase("profiles: a suffix user keeps her rule"):
        r = choose(carol, "pcarol-base", "pgpu")
        assert r.status_code == 400, (r.status_code, r.text)
        assert "you have no profiles to choose from" in r.json()["message"]
        assert_no_server(carol, "pcarol-base", "jupyter-pcarol-2dbase")
        assert 'name="profile"' not in carol.get("/hub/home").text
        start_and_wait(carol, "pcarol-base")
        spec = spec_of("jupyter-pcarol-2dbase")
        assert image_of(spec) == BASE_RULE_IMAGE
        assert constraints_of(spec) == sorted([GLOBAL, LABEL])
        assert generic_resources(spec) == []
        carol.stop_server("pcarol-base")
    log("profiles: done")

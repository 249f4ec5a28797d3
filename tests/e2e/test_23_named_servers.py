"""Named servers (HUB_ALLOW_NAMED_SERVERS) on the real swarm: a user's
default and named server run at once as two services, see the same files
(the user's volume), the per-user limit refuses one more with nothing
created, and stopping one leaves the other running. Then the same in a real
browser (Debian's chromium, Playwright), as a person does it on the hub's
home page: delete the stopped named server, type a new name, press "Add New
Server" and then the new row's "start", land in that server's JupyterLab,
find the file the default server saved, stop it with its row's "stop"."""

from . import swarm
from .browser import Browsers
from .conftest import SETTINGS, observe, phase
from .deploy import deploy
from .hubclient import start_and_wait
from .swarm import wait_for

NAME = "nina"
PASSWORD = "a long password 1"
DEFAULT, SECOND = "jupyter-nina", "jupyter-nina-s-second"
TYPED = "lab2"  # what the person types; a valid slug, so also the server's name
THIRD = f"jupyter-nina-s-{TYPED}"


def server_model(client, server):
    return client.api("GET", f"/users/{NAME}").json()["servers"].get(server)


def test_two_servers_of_one_user_at_once_share_files():
    d = deploy(**SETTINGS, HUB_ALLOW_NAMED_SERVERS="true", HUB_NAMED_SERVER_LIMIT_PER_USER="1")
    admin = d.admin_client()
    user = d.client(NAME)
    user.signup(NAME, PASSWORD)
    admin.authorize(NAME)
    assert user.login(NAME, PASSWORD).ok

    with phase("named servers: the default one and 'second' run at once"):
        start_and_wait(user)
        r = user.api("POST", f"/users/{NAME}/servers/second")
        assert r.status_code in (201, 202), (r.status_code, r.text[:300])
        wait_for(lambda: (server_model(user, "second") or {}).get("ready"), 180,
                 "the named server 'second' ready")
        services = sorted(swarm.user_services())
        observe(f"named servers: services {services}")
        assert services == [DEFAULT, SECOND], services
        default_task = swarm.running_task(DEFAULT)["ID"]
        assert swarm.running_task(SECOND)

    with phase("named servers: a file saved in one is there in the other"):
        user.open_server(NAME)
        user.put_file("persistence/shared.txt", "saved by the default server")
        user.open_server(f"{NAME}/second")
        assert user.get_file("persistence/shared.txt", f"{NAME}/second") == "saved by the default server"
        mounts = [swarm.service_inspect(s)["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Source"]
                  for s in (DEFAULT, SECOND)]
        assert mounts[0] == mounts[1], mounts

    with phase("named servers: over the limit of 1: refused, nothing created"):
        r = user.api("POST", f"/users/{NAME}/servers/third")
        observe(f"named servers: a third: HTTP {r.status_code} {r.text[:160]}")
        assert r.status_code == 400 and "maximum" in r.text, (r.status_code, r.text[:300])
        assert sorted(swarm.user_services()) == [DEFAULT, SECOND]

    with phase("named servers: stopping 'second' leaves the default one running"):
        r = user.api("DELETE", f"/users/{NAME}/servers/second")
        assert r.status_code in (202, 204), (r.status_code, r.text[:300])
        wait_for(lambda: SECOND not in swarm.user_services(), 90, f"{SECOND} removed")
        assert swarm.running_task(DEFAULT)["ID"] == default_task
        assert user.get_file("persistence/shared.txt", NAME) == "saved by the default server"

    with Browsers(d.base_url, "named-servers") as browsers:
        on_the_home_page(browsers, user, default_task)
    user.stop_server(NAME)
    swarm.cleanup()


def on_the_home_page(browsers, user, default_task):
    from playwright.sync_api import expect

    nina = browsers.person(NAME)
    page = nina.page
    with browsers.step(f"{NAME}: logs in, deletes the stopped server 'second'"):
        nina.visit("/hub/home")
        nina.wait_for_path(r"/hub/login$")
        nina.log_in(NAME, PASSWORD)
        nina.wait_for_path(r"/hub/home$")
        page.wait_for_load_state("networkidle")  # home.js hooks up the buttons once loaded
        page.once("dialog", lambda dialog: dialog.accept())  # "Are you sure ...?"
        page.locator("#delete-second").click()
        expect(page.locator('tr[data-server-name="second"]')).to_have_count(0)
        wait_for(lambda: "second" not in user.api(
            "GET", f"/users/{NAME}?include_stopped_servers=1").json()["servers"],
            30, "'second' deleted in the hub")

    with browsers.step(f"{NAME}: types {TYPED!r}, presses Add New Server, then its start"):
        page.locator(".new-server-name").fill(TYPED)
        page.locator(".new-server-btn").click()  # JupyterHub 6: adds the row, starts nothing
        start = page.locator(f"#start-{TYPED}")
        expect(start).to_be_visible()  # after the page's reload
        assert sorted(swarm.user_services()) == [DEFAULT]
        start.click()
        nina.wait_for_path(rf"/user/{NAME}/{TYPED}/lab", timeout=180_000)
        observe(f"named servers (browser): services {sorted(swarm.user_services())}")
        assert sorted(swarm.user_services()) == [DEFAULT, THIRD]

    with browsers.step(f"{NAME}: JupyterLab of {TYPED} has the default server's file"):
        nina.wait_for_lab()
        nina.lab_open_folder("persistence")
        expect(nina.lab_listing_item("shared.txt")).to_be_visible()
        nina.keep_screenshot("named-server-lab")
        observe(f"named servers (browser): /user/{NAME}/{TYPED}/lab lists persistence/shared.txt")

    with browsers.step(f"{NAME}: stops {TYPED} on the home page; the default one runs on"):
        nina.visit("/hub/home")
        page.wait_for_load_state("networkidle")
        page.locator(f"#stop-{TYPED}").click()
        expect(page.locator(f"#start-{TYPED}")).to_be_visible(timeout=120_000)
        wait_for(lambda: THIRD not in swarm.user_services(), 90, f"{THIRD} removed")
        assert swarm.running_task(DEFAULT)["ID"] == default_task

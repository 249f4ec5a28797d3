"""The operator's and the user's journeys in a real browser (Debian's
chromium, driven by Playwright), on the shared deployment: clicks and typing
as a person would, no API calls.

1. Operator: the admin logs in (the account the hub made at its first start,
   with the generated password, or AUTH_ADMIN_PASSWORD's); a new user signs up, is
   told the request went to the admin and is refused at login; the admin
   finds "Authorize Users" in the hub's navigation bar and approves the user
   by clicking.
2. User: logs in, presses "Start My Server", sees the spawn progress, lands in
   JupyterLab; makes a notebook in persistence/, runs `print(6*7)`, sees 42,
   saves; stops the server on the hub's home page and at once starts it
   again: JupyterLab loads and the notebook is there with its output.
3. A user whose suffix rule no node satisfies: the spawn page names swarm's
   reason.

A failing step saves a screenshot of every open browser under
artifacts/screenshots/ and prints where. Successful runs keep the login page,
the spawn progress and JupyterLab under artifacts/screenshots/success/;
JHSWARM_DOCS_SCREENSHOTS=1 also refreshes docs/screenshots/ (README.md and docs/).
"""

import re

import pytest

from .browser import Browsers
from .conftest import ADMIN, IMAGE_MARKER, PASSWORD, observe

USER = "lena"
CHOOSER = "pia"  # in group `lab`: the shared deployment's profile pcpu is hers to choose
NOWHERE = "otto-nowhere"  # the shared deployment's `nowhere` rule: no node has its label
REASON = "scheduling constraints not satisfied"
NOTEBOOK = "answer.ipynb"

# people who signed up and were approved in this module: name -> Person
ACCOUNTS = {}


@pytest.fixture(scope="module")
def browsers(hub):
    with Browsers(hub.base_url, "browser") as b:
        yield b


@pytest.fixture(scope="module")
def operator(hub, browsers):
    """The admin's browser, logged in, on the hub's home page."""
    from playwright.sync_api import expect

    admin = browsers.person(ADMIN)
    with browsers.step("operator: first visit, the admin gets in"):
        admin.visit("/hub/home")
        admin.wait_for_path(r"/hub/login$")
        # the account exists from the first start: AUTH_ADMIN_PASSWORD, or
        # the generated password docs/setup.md says how to read
        password = hub.admin_password()
        observe("browser: admin account made at start-up "
                f"({'AUTH_ADMIN_PASSWORD' if hub.env.get('AUTH_ADMIN_PASSWORD') else '/data/admin_password'}): "
                "logging in")
        admin.log_in(ADMIN, password)
        admin.wait_for_path(r"/hub/home$")
        expect(admin.page.locator("#start")).to_be_visible()
    return admin


def new_account(browsers, admin, name):
    """`name` signs up, is told to wait and refused at login; the admin finds
    the approval page from the hub's own pages and approves by clicking."""
    from playwright.sync_api import expect

    if name in ACCOUNTS:
        return ACCOUNTS[name]
    person = browsers.person(name)
    page = person.page
    with browsers.step(f"{name}: first visit, sign up"):
        person.visit("/")
        person.wait_for_path(r"/hub/login$")
        expect(page.get_by_role("button", name="Sign In")).to_be_visible()
        if name == USER:
            person.keep_screenshot("login", docs=True)
        page.get_by_role("link", name="Sign up").click()
        person.wait_for_path(r"/hub/signup$")
        message = person.sign_up(name, PASSWORD)
        observe(f"browser: {name} signed up, the page says: {message!r}")
        assert "sent to the admin" in message, message

    with browsers.step(f"{name}: logs in before approval, is refused"):
        page.get_by_role("link", name="Login", exact=True).click()
        person.wait_for_path(r"/hub/login$")
        person.log_in(name, PASSWORD)
        person.wait_for_path(r"/hub/login$")
        error = person.login_error()
        observe(f"browser: {name} logging in before approval is told: {error!r}")
        assert "has not been authorized" in error, error

    with browsers.step(f"operator: finds the approval page, approves {name}"):
        admin.visit("/hub/home")
        link = admin.nav_link("Authorize Users")
        expect(link, "the hub's navigation bar has no 'Authorize Users' link").to_be_visible()
        link.click()
        admin.wait_for_path(r"/hub/authorize$")
        row = admin.page.locator(f'tr[id="{name}"]')
        expect(row).to_be_visible()
        row.get_by_role("button", name="Authorize", exact=True).click()
        admin.wait_for_path(r"/hub/authorize$")
        expect(row.get_by_role("button", name="Unauthorize", exact=True)).to_be_visible()
        expect(row).to_contain_text("Yes")
    ACCOUNTS[name] = person
    return person


def log_in_at_home(browsers, person, name):
    """Open the hub's home page, log in, be back on it."""
    from playwright.sync_api import expect

    with browsers.step(f"{name}: logs in"):
        person.visit("/hub/home")
        person.wait_for_path(r"/hub/login$")
        person.log_in(name, PASSWORD)
        person.wait_for_path(r"/hub/home$")
        expect(person.page.locator("#start")).to_have_text(re.compile(r"^\s*Start\s+My Server\s*$"))


def test_operator_approves_new_user(hub, browsers, operator):
    new_account(browsers, operator, USER)


def test_user_notebook_survives_stop_and_start(hub, browsers, operator):
    from playwright.sync_api import expect

    lena = new_account(browsers, operator, USER)
    page = lena.page
    log_in_at_home(browsers, lena, USER)

    with browsers.step(f"{USER}: presses Start My Server, sees progress"):
        page.locator("#start").click()
        lena.wait_for_path(rf"/hub/spawn-pending/{USER}$")
        expect(page.locator("#progress-message")).not_to_be_empty()
        page.get_by_text("Event log", exact=True).click()
        expect(page.locator("#progress-log .progress-log-event").first).to_be_visible()
        lena.keep_screenshot("spawn-progress", docs=True)
        observe(f"browser: {USER}'s spawn page: {page.locator('#progress-message').inner_text()!r}")

    with browsers.step(f"{USER}: lands in JupyterLab"):
        lena.wait_for_path(rf"/user/{USER}/lab", timeout=180_000)
        lena.wait_for_lab()
        expect(lena.lab_listing_item("persistence")).to_be_visible()

    with browsers.step(f"{USER}: new notebook in persistence/, runs a cell"):
        lena.lab_open_folder("persistence")
        page.locator('.jp-FileBrowser [data-command="launcher:create"]').first.click()
        launcher = page.locator(".jp-Launcher-body").filter(visible=True).filter(
            has=page.locator(".jp-Launcher-cwd", has_text=re.compile(r"^\s*persistence\s*$")))
        expect(launcher, "a launcher in persistence/").to_be_visible()
        launcher.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
        expect(page.locator(".lm-TabBar-tab.jp-mod-current")).to_contain_text("Untitled")
        lena.wait_for_kernel_idle()
        cell = page.locator(".jp-NotebookPanel .jp-CodeCell .cm-content").first
        cell.click()
        page.keyboard.type("print(6*7)")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
        expect(output).to_have_text("42", timeout=120_000)

    with browsers.step(f"{USER}: saves as {NOTEBOOK}"):
        page.keyboard.press("Control+s")
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_be_visible()  # JupyterLab asks for a name on first save
        name_box = dialog.locator("input[type=text], input:not([type])").first
        name_box.fill(NOTEBOOK)
        dialog.get_by_role("button", name="Rename", exact=True).click()
        expect(dialog).to_have_count(0)
        expect(lena.lab_listing_item(NOTEBOOK)).to_be_visible()
        tab = page.locator(".lm-TabBar-tab.jp-mod-current")
        expect(tab).to_contain_text(NOTEBOOK)
        expect(tab).not_to_have_class(re.compile(r"jp-mod-dirty"))
        lena.dismiss_news_toast()
        lena.keep_screenshot("jupyterlab-notebook", docs=True)

    with browsers.step(f"operator: the Cluster page shows {USER}'s server on its node"):
        operator.visit("/hub/home")
        operator.nav_link("Cluster").click()
        operator.wait_for_path(r"/hub/cluster$")
        row = operator.page.locator(f'tr.server[data-service="jupyter-{USER}"]')
        expect(row.locator("td.user")).to_have_text(USER)
        expect(row.locator("td.state")).to_have_text("running")
        operator.keep_screenshot("cluster", docs=True)

    with browsers.step(f"{USER}: stops the server on the hub's home page"):
        lena.visit("/hub/home")
        page.locator("#stop").click()
        expect(page.locator("#start")).to_have_text("Start My Server", timeout=120_000)

    with browsers.step(f"{USER}: starts it again at once, JupyterLab loads"):
        page.locator("#start").click()
        lena.wait_for_path(rf"/user/{USER}/lab", timeout=180_000)
        lena.wait_for_lab()

    with browsers.step(f"{USER}: the notebook is there with its output"):
        if lena.lab_current_folder() != "persistence":
            lena.lab_open_folder("persistence")
        lena.lab_listing_item(NOTEBOOK).dblclick()
        panel = page.locator(".jp-NotebookPanel").filter(visible=True)
        expect(panel.locator(".jp-OutputArea-output").first).to_have_text("42")
        expect(panel.locator(".jp-CodeCell .cm-content").first).to_have_text("print(6*7)")
        expect(page.locator(".lm-TabBar-tab.jp-mod-current")).to_contain_text(NOTEBOOK)

    with browsers.step(f"{USER}: stops the server"):
        lena.visit("/hub/home")
        page.locator("#stop").click()
        expect(page.locator("#start")).to_have_text("Start My Server", timeout=120_000)


def test_unplaceable_spawn_shows_reason(hub, browsers, operator):
    from playwright.sync_api import expect

    otto = new_account(browsers, operator, NOWHERE)
    page = otto.page
    log_in_at_home(browsers, otto, NOWHERE)

    with browsers.step(f"{NOWHERE}: presses Start My Server, is told why it fails"):
        page.locator("#start").click()
        otto.wait_for_path(rf"/hub/spawn-pending/{NOWHERE}$")
        message = page.locator("#progress-message")
        expect(message).to_contain_text(REASON, timeout=90_000)
        expect(page.locator("#progress-bar")).to_have_class(re.compile(r"\bbg-danger\b"))
        expect(page.locator("#progress-details")).to_have_attribute("open", "")
        observe(f"browser: {NOWHERE}'s spawn page says: {message.inner_text()!r}")


def test_profile_chosen_on_the_spawn_page(hub, browsers, operator):
    """A user of group `lab` presses Start, gets the spawn page's choice,
    picks "Plain CPU" (profile pcpu, the image `...:base`), and JupyterLab
    opens in that image: its marker file is in the notebook directory."""
    from playwright.sync_api import expect

    pia = new_account(browsers, operator, CHOOSER)
    page = pia.page
    log_in_at_home(browsers, pia, CHOOSER)  # the hub knows her from her first login
    admin = hub.admin_client()
    for call in (("POST", "/groups/lab"), ("POST", "/groups/lab/users")):
        r = admin.api(*call, json={"users": [CHOOSER]} if call[1].endswith("users") else None)
        assert r.status_code in (200, 201, 409), (call, r.status_code, r.text[:200])

    with browsers.step(f"{CHOOSER}: presses Start My Server, chooses Plain CPU"):
        page.locator("#start").click()
        pia.wait_for_path(rf"/hub/spawn(/{CHOOSER})?$")
        choice = page.locator('input[type=radio][name=profile][value="pcpu"]')
        expect(choice).to_be_visible()
        expect(page.locator('input[type=radio][name=profile][value="pgpu"]')).to_have_count(0)
        choice.check()
        pia.keep_screenshot("spawn-profiles", docs=True)
        page.locator('form#spawn_form [type=submit]').click()

    with browsers.step(f"{CHOOSER}: JupyterLab opens in the profile's image"):
        pia.wait_for_path(rf"/user/{CHOOSER}/lab", timeout=180_000)
        pia.wait_for_lab()
        expect(pia.lab_listing_item(IMAGE_MARKER.format("base"))).to_be_visible()
        observe(f"browser: {CHOOSER} chose Plain CPU; JupyterLab lists {IMAGE_MARKER.format('base')}")

    with browsers.step(f"{CHOOSER}: stops the server"):
        pia.visit("/hub/home")
        page.locator("#stop").click()
        expect(page.locator("#start")).to_have_text("Start My Server", timeout=120_000)

"""A real browser for the end-to-end tests: Debian's chromium driven by
Playwright, one fresh profile per person, clicks and typing as a person would.

Chromium comes from Debian (scripts/browser-up.sh installs it); Playwright is
only the driver (requirements-test.txt). Never `playwright install`.

    with Browsers(hub.base_url, "test_name") as browsers:
        alice = browsers.person("alice")
        with browsers.step("alice signs up"):
            ...

A step that fails saves a screenshot of every open browser under
artifacts/screenshots/ (git-ignored) and prints where.
"""

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .conftest import phase
from .swarm import ROOT, log

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
FAILURE_SHOTS = ROOT / "artifacts" / "screenshots"
SUCCESS_SHOTS = ROOT / "artifacts" / "screenshots" / "success"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 30_000


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


class Browsers:
    """One Playwright driver; a chromium with its own fresh profile per person."""

    def __init__(self, base_url, test_name):
        self.base_url = base_url.rstrip("/")
        self.test_name = slug(test_name)
        self.people = []
        self._pw = None
        self._steps = 0

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        from playwright.sync_api import expect

        expect.set_options(timeout=TIMEOUT_MS)
        self._pw = sync_playwright().start()
        return self

    def __exit__(self, *exc):
        for person in self.people:
            person.close()
        self._pw.stop()

    def person(self, name):
        person = Person(self._pw, self.base_url, name)
        self.people.append(person)
        return person

    @contextmanager
    def step(self, name):
        """A step of a journey: timed; on failure, a screenshot per browser."""
        self._steps += 1
        number = self._steps
        try:
            with phase(f"browser: {name}"):
                yield
        except BaseException:
            for person in self.people:
                path = FAILURE_SHOTS / f"{self.test_name}-{number:02d}-{slug(name)}-{person.name}.png"
                saved = person.screenshot(path)
                log(f"FAILED step {name!r}: screenshot of {person.name}'s browser "
                    f"({person.url()}): {saved or 'could not be taken'}")
            raise


class Person:
    """One person's browser: a chromium with a fresh user data dir."""

    def __init__(self, pw, base_url, name):
        self.name = name
        self.base_url = base_url
        self.profile = tempfile.mkdtemp(prefix=f"jhswarm-chromium-{slug(name)}-")
        self.context = pw.chromium.launch_persistent_context(
            self.profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            ignore_https_errors=True,  # a deployment with a test CA
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()

    def close(self):
        try:
            self.context.close()
        except Exception as e:  # a crashed browser must not hide the result
            log(f"closing {self.name}'s browser: {e}")
        shutil.rmtree(self.profile, ignore_errors=True)

    def url(self):
        try:
            return self.page.url
        except Exception:
            return "?"

    def screenshot(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=str(path), timeout=10_000)
        except Exception as e:
            log(f"screenshot {path} failed: {e}")
            return None
        return path

    def keep_screenshot(self, name, docs=False):
        """A screenshot of a successful step, under artifacts/screenshots/success/;
        with docs=True also refreshed in docs/screenshots/ (the README's and the
        docs pages') when JHSWARM_DOCS_SCREENSHOTS=1."""
        path = self.screenshot(SUCCESS_SHOTS / f"{name}.png")
        if path and docs and os.environ.get("JHSWARM_DOCS_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")
            log(f"docs screenshot refreshed: {DOCS_SHOTS / (name + '.png')}")
        return path

    # -- the address bar ---------------------------------------------------------
    def visit(self, path):
        """Type an address of the hub into the address bar."""
        self.page.goto(self.base_url + path)

    def path(self):
        from urllib.parse import urlsplit

        return urlsplit(self.page.url).path

    def wait_for_path(self, pattern, timeout=TIMEOUT_MS):
        """Wait until the address bar's path matches the regular expression."""
        regex = re.compile(pattern)
        self.page.wait_for_url(lambda url: bool(regex.search(url.split("?")[0].split("#")[0])),
                               timeout=timeout)

    # -- the hub's own pages -----------------------------------------------------
    def sign_up(self, username, password):
        """On the sign-up page: fill the form, press "Create User"; return the
        message the page shows."""
        page = self.page
        page.get_by_label("Username:").fill(username)
        page.locator("#password_input").fill(password)
        page.locator("#password_confirmation_input").fill(password)
        page.get_by_role("button", name="Create User").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        return " ".join(alert.inner_text().split())

    def log_in(self, username, password):
        """On the login page: type name and password, press "Sign In"."""
        page = self.page
        page.get_by_label("Username:").fill(username)
        page.locator("#password_input").fill(password)
        page.get_by_role("button", name="Sign In").click()
        page.wait_for_load_state()

    def login_error(self):
        """The login page's error, once the page shows one."""
        error = self.page.locator(".login_error")
        error.wait_for()
        return " ".join(error.inner_text().split())

    def nav_link(self, text):
        return self.page.locator("nav").get_by_role("link", name=text, exact=True)

    # -- JupyterLab --------------------------------------------------------------
    def wait_for_lab(self, timeout=120_000):
        """JupyterLab has rendered its shell and the file browser's listing."""
        page = self.page
        page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=timeout)
        page.locator(".jp-DirListing-content").wait_for(state="visible", timeout=timeout)

    def lab_listing_item(self, name):
        return self.page.locator(".jp-DirListing-item").filter(
            has=self.page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
        )

    def lab_open_folder(self, name):
        """Double-click a folder in the file browser, wait for the breadcrumbs."""
        self.lab_listing_item(name).dblclick()
        self.page.locator(".jp-BreadCrumbs").get_by_text(name, exact=True).wait_for()

    def wait_for_kernel_idle(self, timeout=120_000):
        """The status bar says the notebook's kernel is idle (a person waits
        for that before running a cell: JupyterLab drops runs that come
        before the kernel is there)."""
        from playwright.sync_api import expect

        expect(self.page.locator("#jp-main-statusbar")).to_contain_text(
            re.compile(r"\|\s*Idle"), timeout=timeout)

    def dismiss_news_toast(self):
        """Answer "No" to JupyterLab's "notified about official Jupyter news?"
        toast if it is showing (it covers part of the page)."""
        toast = self.page.locator(".Toastify__toast").filter(has_text="Jupyter news")
        try:
            if toast.count() and toast.first.is_visible():
                toast.first.get_by_role("button", name="No", exact=True).click(timeout=5_000)
                toast.first.wait_for(state="hidden", timeout=5_000)
        except Exception as e:  # cosmetic: never fail a journey over it
            log(f"could not dismiss JupyterLab's news toast: {e}")

    def lab_current_folder(self):
        crumbs = self.page.locator(".jp-BreadCrumbs-item")
        texts = [t.strip() for t in crumbs.all_inner_texts() if t.strip()]
        return texts[-1] if texts else ""

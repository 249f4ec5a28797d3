"""A browser-like HTTP client for the hub, through the proxy's public port.

One HubClient is one person's browser: a requests.Session keeping the hub's
cookies (login, `_xsrf`) and, after `open_server`, the user server's OAuth
and `_xsrf` cookies. POSTs to the hub send `_xsrf` (form) or `X-XSRFToken`
(API), as JupyterHub 5 requires for cookie-authenticated requests.
"""

import html
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests

from .swarm import log

TIMEOUT = 30


@dataclass
class LoginResult:
    ok: bool
    status: int
    location: str
    error: str  # the login page's error text when not ok


def _page_text(pattern, text):
    match = re.search(pattern, text, re.S)
    if not match:
        return ""
    return " ".join(html.unescape(match.group(1)).split())


class HubError(AssertionError):
    pass


class HubClient:
    def __init__(self, base_url, name=None):
        self.base = base_url.rstrip("/")
        self.name = name
        self.session = requests.Session()

    def __repr__(self):
        return f"<HubClient {self.name or 'anonymous'} {self.base}>"

    def url(self, path):
        return self.base + path

    # -- cookies ---------------------------------------------------------------
    def cookie(self, name, for_path):
        """Value of cookie `name` that a browser would send to `for_path`
        (the most specific path wins), or None."""
        best = None
        for c in self.session.cookies:
            if c.name != name or not for_path.startswith(c.path or "/"):
                continue
            if best is None or len(c.path or "/") > len(best.path or "/"):
                best = c
        return best.value if best else None

    def hub_xsrf(self):
        token = self.cookie("_xsrf", "/hub/")
        if not token:
            raise HubError(f"{self}: no _xsrf cookie for /hub/ (visit a hub page first)")
        return token

    # -- pages -----------------------------------------------------------------
    def get(self, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.session.get(self.url(path), **kw)

    def signup(self, name, password):
        """Sign up through /hub/signup; return the page's alert text."""
        self.get("/hub/signup").raise_for_status()
        r = self.session.post(
            self.url("/hub/signup"),
            data={
                "username": name,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": self.hub_xsrf(),
            },
            timeout=TIMEOUT,
        )
        if r.status_code != 200:
            raise HubError(f"signup of {name}: HTTP {r.status_code}: {r.text[:500]}")
        return _page_text(r'<div class="alert [^"]*" role="alert">(.*?)</div>', r.text)

    def login(self, name, password):
        self.get("/hub/login").raise_for_status()
        r = self.session.post(
            self.url("/hub/login"),
            data={"username": name, "password": password, "_xsrf": self.hub_xsrf()},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        ok = r.status_code in (302, 303) and self.cookie("jupyterhub-hub-login", "/hub/")
        error = "" if ok else _page_text(r'<p class="login_error">(.*?)</p>', r.text)
        if not ok and r.status_code >= 500:
            error = f"HTTP {r.status_code}: {r.text[:300]}"
        if ok:
            self.name = name
            # the first page after login sets the authenticated _xsrf cookie
            self.get("/hub/home").raise_for_status()
        return LoginResult(bool(ok), r.status_code, r.headers.get("Location", ""), error)

    def authorize(self, name):
        """As an admin: the approval toggle, as the Authorize Users page's
        button sends it: POST /hub/authorize/<name> with the XSRF token."""
        self.get("/hub/authorize")  # an authenticated _xsrf cookie
        r = self.session.post(self.url(f"/hub/authorize/{quote(name)}"),
                              data={"_xsrf": self.hub_xsrf()}, allow_redirects=False,
                              timeout=TIMEOUT)
        if r.status_code == 405:  # an earlier image's hub (5.5.4): approval on GET
            r = self.get(f"/hub/authorize/{quote(name)}", allow_redirects=False)
        if r.status_code not in (302, 303):
            raise HubError(f"authorize {name}: HTTP {r.status_code}: {r.text[:300]}")
        return r

    # -- hub REST API ----------------------------------------------------------
    def api(self, method, path, **kw):
        headers = dict(kw.pop("headers", {}))
        headers["X-XSRFToken"] = self.hub_xsrf()
        kw.setdefault("timeout", TIMEOUT)
        return self.session.request(method, self.url("/hub/api" + path), headers=headers, **kw)

    def user_model(self, name):
        r = self.api("GET", f"/users/{quote(name)}")
        if r.status_code != 200:
            raise HubError(f"GET /hub/api/users/{name}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def start_server(self, name):
        """POST /hub/api/users/<name>/server; returns the response as is
        (201 started, 202 pending, or an error the hub reports at once)."""
        return self.api("POST", f"/users/{quote(name)}/server")

    def wait_ready(self, name, timeout=180):
        """Wait until the hub reports the default server ready; return the
        user model. Fails with the progress stream's message if the spawn
        fails or the wait times out."""
        started = time.monotonic()
        while True:
            model = self.user_model(name)
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return model
            if not server and not model.get("pending"):
                events = self.progress_events(name, timeout=10)
                raise HubError(f"server of {name} is not starting any more: {events[-1:]}")
            if time.monotonic() - started > timeout:
                raise HubError(f"server of {name} not ready after {timeout}s: {model}")
            time.sleep(0.5)

    def stop_server(self, name, timeout=90):
        """DELETE the server and wait until the hub has stopped it."""
        r = self.api("DELETE", f"/users/{quote(name)}/server")
        if r.status_code not in (202, 204):
            raise HubError(f"stop {name}: HTTP {r.status_code}: {r.text[:300]}")
        started = time.monotonic()
        while True:
            model = self.user_model(name)
            if not model.get("servers") and not model.get("pending"):
                return model
            if time.monotonic() - started > timeout:
                raise HubError(f"server of {name} not stopped after {timeout}s: {model}")
            time.sleep(0.5)

    def progress_events(self, name, timeout=120):
        """Read the spawn's event stream until a ready/failed event (or the
        stream ends or the timeout passes); return the events."""
        events = []
        started = time.monotonic()
        try:
            with self.api(
                "GET",
                f"/users/{quote(name)}/server/progress",
                headers={"Accept": "text/event-stream"},
                stream=True,
                timeout=(10, 15),
            ) as r:
                if r.status_code != 200:
                    return [{"http_status": r.status_code, "message": r.text[:300]}]
                for line in r.iter_lines(decode_unicode=True):
                    if line and line.startswith("data:"):
                        event = json.loads(line[5:])
                        event["t"] = round(time.monotonic() - started, 1)
                        events.append(event)
                        if event.get("ready") or event.get("failed"):
                            break
                    if time.monotonic() - started > timeout:
                        events.append({"message": f"(stopped reading after {timeout}s)"})
                        break
        except requests.RequestException as e:
            events.append({"message": f"(event stream error: {e})"})
        return events

    # -- the user's own server, through the proxy -----------------------------
    def open_server(self, name=None):
        """Visit /user/<name>/lab like a browser (OAuth redirects included)
        so the session holds the server's cookies; return the final response."""
        name = name or self.name
        r = self.get(f"/user/{quote(name)}/lab")
        path = urlsplit(r.url).path
        if r.status_code != 200 or not path.startswith(f"/user/{quote(name)}/"):
            raise HubError(f"/user/{name}/lab ended at {r.url} with HTTP {r.status_code}")
        return r

    def server_api(self, method, path, name=None, **kw):
        name = name or self.name
        prefix = f"/user/{quote(name)}/"
        headers = dict(kw.pop("headers", {}))
        token = self.cookie("_xsrf", prefix)
        if token:
            headers["X-XSRFToken"] = token
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, self.url(prefix + "api/" + path), headers=headers, **kw)

    def server_status(self, name=None):
        r = self.server_api("GET", "status", name)
        if r.status_code != 200:
            raise HubError(f"/user/{name or self.name}/api/status: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def put_file(self, path, text, name=None):
        r = self.server_api(
            "PUT", "contents/" + quote(path), name,
            json={"type": "file", "format": "text", "content": text},
        )
        if r.status_code not in (200, 201):
            raise HubError(f"PUT contents/{path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def get_file(self, path, name=None):
        """The file's text, or None if the server says 404."""
        r = self.server_api("GET", "contents/" + quote(path) + "?content=1", name)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise HubError(f"GET contents/{path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()["content"]


def start_and_wait(client, name=None, timeout=180):
    """Start a server and wait for it; return (user model, seconds)."""
    name = name or client.name
    t0 = time.monotonic()
    r = client.start_server(name)
    if r.status_code not in (201, 202):
        raise HubError(f"start {name}: HTTP {r.status_code}: {r.text[:500]}")
    model = client.wait_ready(name, timeout)
    took = time.monotonic() - t0
    log(f"server of {name} ready in {took:.1f}s")
    return model, took

"""TEST-ONLY: make a hub database the way an earlier hub generation does
(JupyterHub 4.0.2 + NativeAuthenticator 1.2.0, the original image's, or
JupyterHub 5.5.4 + NativeAuthenticator 1.3.0, this project's previous
image's): start that hub briefly, sign users up through its sign-up page,
approve some as the admin through NativeAuthenticator's authorize page, log
the approved ones in, make an API token for those with "token": true, stop it.

Reads a JSON spec on stdin (so the database password is never on a command
line or in the environment docker shows):
  {"db_url": "...", "cookie_secret_file": "/data/jupyterhub_cookie_secret",
   "admin": "admin", "users": [{"name": "alice", "password": "...",
   "approve": true, "token": true}, ...]}
The admin is the first entry of "users" with the admin's name.
Prints one JSON line: the version, the schema revision, the users_info and
users rows, and the tokens made ({name: token}).
Run with --network host (the hub and its proxy bind free ports on 127.0.0.1).
"""

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import jupyterhub


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        # logins are not followed: the hub would redirect to /hub/spawn and
        # start a server
        self.no_redirect = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def xsrf(self):
        return next((c.value for c in self.jar if c.name == "_xsrf"), "")

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as r:
            return r.status, r.geturl(), r.read().decode()

    def post(self, path, data):
        data = dict(data, _xsrf=self.xsrf())
        body = urllib.parse.urlencode(data).encode()
        with self.opener.open(self.base + path, body, timeout=30) as r:
            return r.status, r.geturl(), r.read().decode()

    def new_token(self, name):
        """An API token of `name`, made through the hub's REST API with the
        login cookie (as the token page does)."""
        request = urllib.request.Request(
            f"{self.base}/hub/api/users/{urllib.parse.quote(name)}/tokens",
            data=json.dumps({"note": "made before the upgrade"}).encode(), method="POST",
            headers={"Content-Type": "application/json", "X-XSRFToken": self.xsrf(),
                     "Referer": self.base + "/hub/token"})
        with self.opener.open(request, timeout=30) as r:
            return json.loads(r.read())["token"]

    def login(self, name, password):
        """True if the hub answers the login form with a redirect (success)."""
        self.get("/hub/login")
        body = urllib.parse.urlencode(
            {"username": name, "password": password, "_xsrf": self.xsrf()}).encode()
        try:
            with self.no_redirect.open(self.base + "/hub/login", body, timeout=30) as r:
                return False  # 200: the login page again, with an error
        except urllib.error.HTTPError as e:
            if e.code in (302, 303):
                return True
            raise


def main():
    spec = json.load(sys.stdin)
    admin = spec["admin"]
    port, hub_port, api_port = free_port(), free_port(), free_port()
    work = tempfile.mkdtemp()
    config = os.path.join(work, "jupyterhub_config.py")
    with open(config, "w") as f:
        f.write(
            "c.JupyterHub.authenticator_class = 'nativeauthenticator.NativeAuthenticator'\n"
            f"c.Authenticator.admin_users = {{{admin!r}}}\n"
            f"c.JupyterHub.db_url = {spec['db_url']!r}\n"
            f"c.JupyterHub.cookie_secret_file = {spec['cookie_secret_file']!r}\n"
            f"c.JupyterHub.ip = '127.0.0.1'\nc.JupyterHub.port = {port}\n"
            f"c.JupyterHub.hub_ip = '127.0.0.1'\nc.JupyterHub.hub_port = {hub_port}\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'\n"
            f"c.ConfigurableHTTPProxy.pid_file = {os.path.join(work, 'proxy.pid')!r}\n"
            "c.JupyterHub.cleanup_servers = False\n"
        )
        if int(jupyterhub.__version__.split(".")[0]) >= 5:  # as this project's 5.5.4 image
            f.write("c.Authenticator.allow_all = True\n")
    os.chmod(config, 0o600)
    hub = subprocess.Popen(["jupyterhub", "-f", config], cwd=work,
                           stdout=sys.stderr, stderr=sys.stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(base + "/hub/health", timeout=3).read()
                break
            except (OSError, urllib.error.URLError):
                if hub.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {jupyterhub.__version__} hub did not come up "
                                     f"(exit {hub.poll()})")
                time.sleep(0.5)
        browsers = {}
        for user in spec["users"]:
            b = browsers[user["name"]] = Browser(base)
            b.get("/hub/signup")
            _, _, page = b.post("/hub/signup", {
                "username": user["name"], "signup_password": user["password"],
                "signup_password_confirmation": user["password"]})
            if "successful" not in page and "sent to the admin" not in page:
                raise SystemExit(f"signup of {user['name']} failed")
        root = browsers[admin]
        if not root.login(admin, spec["users"][0]["password"]):
            raise SystemExit(f"admin login on the {jupyterhub.__version__} hub failed")
        for user in spec["users"]:
            if user["name"] != admin and user.get("approve"):
                root.get("/hub/authorize/" + urllib.parse.quote(user["name"]))
        tokens = {}
        for user in spec["users"]:  # in fresh browsers
            b = Browser(base)
            logged_in = b.login(user["name"], user["password"])
            if logged_in != (user["name"] == admin or bool(user.get("approve"))):
                raise SystemExit(f"{user['name']}: login on the {jupyterhub.__version__} hub: "
                                 f"{logged_in}")
            if logged_in and user.get("token"):
                tokens[user["name"]] = b.new_token(user["name"])
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(30)
        except subprocess.TimeoutExpired:
            hub.kill()
        try:  # the hub stops the proxy it started; make sure
            with open(os.path.join(work, "proxy.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass

    from sqlalchemy import create_engine, text
    engine = create_engine(spec["db_url"])
    with engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        rows = conn.execute(text("SELECT username, is_authorized FROM users_info ORDER BY id")).all()
        hub_users = conn.execute(text("SELECT name, admin FROM users ORDER BY id")).all()
    engine.dispose()
    print(json.dumps({
        "jupyterhub": jupyterhub.__version__,
        "revision": revision,
        "users_info": [[name, bool(ok)] for name, ok in rows],
        "users": [[name, bool(adm)] for name, adm in hub_users],
        "tokens": tokens,
    }))


if __name__ == "__main__":
    main()

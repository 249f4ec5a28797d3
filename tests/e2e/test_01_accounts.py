"""Accounts with NativeAuthenticator 1.3.0 on the pinned JupyterHub: the
admin account made at the first start (generated password), signup, admin
approval, refusal of unapproved users, login.

Login also guards the JupyterHub pin: NativeAuthenticator 1.3.0's login
handler calls `self.statsd`, which JupyterHub 6 removed (HTTP 500 there).
"""

from . import swarm
from .conftest import ADMIN, PASSWORD, phase


def test_signup_approval_and_login(hub, admin):
    with phase("accounts: the admin account exists from the start, its password generated"):
        # nobody can claim the admin name: the sign-up finds it taken
        assert "already in use" in admin.signup_message, admin.signup_message
        assert not hub.client().login(ADMIN, PASSWORD).ok
        assert admin.login_result.ok, admin.login_result  # with /data/admin_password's
        me = admin.api("GET", "/user").json()
        assert me["name"] == ADMIN and me["admin"] is True, me
        mode = swarm.docker("exec", swarm.hub_container(), "stat", "-c", "%a %U",
                            "/data/admin_password").stdout.split()
        assert mode == ["600", "root"], mode
        logs = swarm.hub_logs(5000)
        assert "/data/admin_password" in logs, logs[-2000:]
        assert hub.admin_password() not in logs, "the generated password is in the hub's log"

    with phase("accounts: users sign up, await approval"):
        alice, mallory = hub.client(), hub.client()
        for client, name in ((alice, "alice"), (mallory, "mallory")):
            message = client.signup(name, PASSWORD)
            assert "sent to the admin" in message, f"{name}: {message!r}"

    with phase("accounts: unapproved user refused"):
        refused = alice.login("alice", PASSWORD)
        assert not refused.ok and refused.status == 200, refused
        assert "has not been authorized" in refused.error, refused
        assert alice.get("/hub/api/user").status_code == 403  # no session

    with phase("accounts: admin approves alice, alice logs in"):
        admin.authorize("alice")
        page = admin.get("/hub/authorize").text
        assert "alice" in page and "mallory" in page
        result = alice.login("alice", PASSWORD)
        assert result.ok, result
        me = alice.api("GET", "/user").json()
        assert me["name"] == "alice" and not me["admin"], me

    with phase("accounts: still refused: mallory, wrong password, non-admin approving"):
        result = mallory.login("mallory", PASSWORD)
        assert not result.ok and "has not been authorized" in result.error, result
        wrong = hub.client().login("alice", PASSWORD + "x")
        assert not wrong.ok and "Invalid username or password" in wrong.error, wrong
        r = alice.get("/hub/authorize/mallory", allow_redirects=False)
        assert r.status_code == 403, r.status_code
        assert not mallory.login("mallory", PASSWORD).ok

    with phase("accounts: approving or discarding takes a POST with the XSRF token"):
        # trudy signs up and does not log in (failed logins would lock her out)
        trudy = hub.client()
        assert "sent to the admin" in trudy.signup("trudy", PASSWORD)

        def approved():
            page = admin.get("/hub/authorize").text
            row = page[page.index('id="trudy"'):]
            return row[:row.index("</tr>")].count("<td>Yes</td>") == 1

        # a link followed by the admin (a plain GET) changes nothing
        for path in ("/hub/authorize/trudy", "/hub/discard/trudy"):
            r = admin.get(path, allow_redirects=False)
            assert r.status_code in (302, 303) and "trudy" not in r.headers["Location"], \
                (path, r.status_code, r.headers.get("Location"))
        assert not approved()  # and still listed: not discarded
        # neither does a form posted from another site (no token)
        r = admin.session.post(admin.url("/hub/authorize/trudy"), allow_redirects=False,
                               timeout=30)
        assert r.status_code == 403, r.status_code
        assert not approved()
        # the page's own button (POST with the token) works
        admin.authorize("trudy")
        assert approved()
        assert trudy.login("trudy", PASSWORD).ok

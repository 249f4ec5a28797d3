"""Sign-up, login and password changes with the inputs bcrypt refuses (over
72 bytes) and the user names that would share a docker name: a plain
message on the page, never HTTP 500, never a second user on one server.

The handlers are NativeAuthenticator's, as the hub routes them
(get_handlers), run on the real authenticator and ORM (sqlite); only the
request and the template rendering are stand-ins."""

import asyncio
import threading
from types import SimpleNamespace

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nativeauthenticator.orm import UserInfo

from conftest import load_config
from test_login import hashing  # noqa: F401 (a fixture: the threads bcrypt hashed in)
from test_operator import make_authenticator
from dockerspawner import DockerSpawner
from jupyterhub_swarm import service_name

escape_username = DockerSpawner._escape  # as the spawner names its objects

LONG = "pässwörd-" * 8  # 72 characters, 88 bytes in UTF-8
SIGN_UP_FORM = {"username": "bob", "signup_password": "correct horse",
                "signup_password_confirmation": "correct horse", "email": "", "2fa": ""}


def authenticator(**env):
    return make_authenticator(load_config(**env))[2]()


def run_handler(auth, path, form, *args, user="alice"):
    """Run the POST of the handler the hub routes `path` to; the page's
    template variables, or the exception it raised."""
    return asyncio.run(run_handler_async(auth, path, form, *args, user=user))


async def run_handler_async(auth, path, form, *args, user="alice"):
    """run_handler on the running loop; the page also says which thread ran
    the loop ("loop_thread")."""
    handler_class = dict(auth.get_handlers(None))[path]
    handler = object.__new__(handler_class)
    handler.application = SimpleNamespace(settings={"authenticator": auth})
    page = {}

    def get_body_argument(name, default=None, strip=True):
        return form.get(name, default)

    async def render_template(name, **variables):
        page.update(variables, template=name)
        return "<html>"

    async def get_current_user():
        return SimpleNamespace(name=user)

    handler.get_body_argument = get_body_argument
    handler.render_template = render_template
    handler.get_current_user = get_current_user
    handler.finish = lambda html=None: None
    post = handler_class.post
    while hasattr(post, "__wrapped__"):  # past @web.authenticated / scope checks
        post = post.__wrapped__
    await post(handler, *args)
    page["loop_thread"] = threading.current_thread()
    return page


def sign_up(auth, name, password="correct horse"):
    return run_handler(auth, "/signup", {
        "username": name, "signup_password": password,
        "signup_password_confirmation": password, "email": "", "2fa": ""})


def test_sign_up_with_a_password_over_72_bytes_gets_a_plain_message():
    auth = authenticator()
    page = sign_up(auth, "alice", LONG)
    assert page["alert"] == "alert-danger"
    assert "72 bytes" in page["result_message"] and "88 bytes" in page["result_message"]
    assert LONG not in page["result_message"]
    assert auth.get_user("alice") is None
    assert sign_up(auth, "alice", "x" * 72)["alert"] != "alert-danger"  # 72 is fine


def test_login_with_a_password_over_72_bytes_is_refused_not_an_error():
    auth = authenticator(AUTH_ADMIN_PASSWORD="correct horse")
    who = asyncio.run(auth.authenticate(None, {"username": "admin", "password": LONG}))
    assert who is None


def test_changing_to_a_password_over_72_bytes_gets_a_plain_message():
    auth = authenticator(AUTH_ADMIN_PASSWORD="correct horse")
    page = run_handler(auth, "/change-password", {
        "old_password": "correct horse", "new_password": LONG,
        "new_password_confirmation": LONG}, user="admin")
    assert page["alert"] == "alert-danger" and "72 bytes" in page["result_message"]
    page = run_handler(auth, "/change-password", {
        "old_password": LONG, "new_password": "battery staple",
        "new_password_confirmation": "battery staple"}, user="admin")
    assert page["alert"] == "alert-danger" and "incorrect" in page["result_message"]
    page = run_handler(auth, "/change-password/([^/]+)", {
        "new_password": LONG, "new_password_confirmation": LONG}, "admin", user="admin")
    assert page["alert"] == "alert-danger" and "72 bytes" in page["result_message"]
    assert auth.get_user("admin").is_valid_password("correct horse")  # unchanged


@pytest.mark.parametrize("name", ["ab\x07c", "tab\there", "bell\x7f", "z\u200bw", "rtl\u202eevil"])
def test_control_and_invisible_characters_are_refused_whatever_the_pattern(name):
    auth = authenticator(AUTH_USERNAME_PATTERN=".{1,32}")
    page = sign_up(auth, name)
    assert page["alert"] == "alert-danger"
    assert "control or invisible" in page["result_message"], page["result_message"]
    assert repr(name) in page["result_message"]  # shown escaped, never raw
    assert auth.get_user(name) is None
    assert not auth.validate_username(name)  # nor at login or through the API


def test_a_name_whose_docker_name_another_user_has_is_refused():
    """A user from before (here "a\\x02e") escapes to "a-2e", as "a." does:
    both would run as the service jupyter-a-2e on the volume
    jupyterhub-user-a-2e."""
    auth = authenticator(AUTH_USERNAME_PATTERN=".{1,32}")
    auth.db.add(UserInfo(username="a\x02e", password=bcrypt.hashpw(b"x", bcrypt.gensalt(4)),
                         is_authorized=True))
    auth.db.commit()
    assert escape_username("a.") == escape_username("a\x02e")
    page = sign_up(auth, "a.")
    assert page["alert"] == "alert-danger"
    assert "same name as another user's" in page["result_message"], page["result_message"]
    assert "a\x02e" not in page["result_message"]  # the other user is not named
    assert auth.get_user("a.") is None
    assert sign_up(auth, "b.")["alert"] != "alert-danger"
    assert auth.get_user("b.").is_valid_password("correct horse")


# -- the shortened service names ----------------------------------------------

def unescape(escaped):
    """The name dockerspawner would have escaped to `escaped`, or None."""
    out, i = bytearray(), 0
    while i < len(escaped):
        if escaped[i] == "-":
            pair = escaped[i + 1:i + 3]
            if len(pair) != 2 or any(c not in "0123456789abcdef" for c in pair):
                return None
            out.append(int(pair, 16))
            i += 3
        else:
            out += escaped[i].encode()
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None


long_names = st.text(st.sampled_from("abc.-_"), min_size=20, max_size=32)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(victim=long_names)
def test_no_name_reaches_a_shortened_service_name(victim):
    """A long name's service name is cut and hashed to 63 characters. Read
    back as an escaped name, it must not be another name's whole service
    name: that user's spawn would take over the victim's server."""
    prefix = "jupyter"
    shortened = service_name(prefix, escape_username(victim))
    assert len(shortened) <= 63
    if len(f"{prefix}-{escape_username(victim)}") <= 63:
        return
    intruder = unescape(shortened[len(prefix) + 1:])
    if intruder is not None and intruder != victim and intruder.isprintable():
        assert service_name(prefix, escape_username(intruder)) != shortened, (
            f"{intruder!r} gets the service {shortened} of {victim!r}")


def test_the_sign_up_hashes_off_the_event_loop_and_the_account_logs_in(hashing):
    """bcrypt takes about 0.25 s of CPU: a class signing up at once must not
    stall every other request of the hub (its health check among them)."""
    auth = authenticator()
    hashing.clear()
    loop_thread = run_handler(auth, "/signup", SIGN_UP_FORM)["loop_thread"]
    assert auth.get_user("bob") is not None
    assert len(hashing) == 1, hashing
    assert hashing[0] is not loop_thread and hashing[0].name.startswith("bcrypt"), hashing
    assert bcrypt.checkpw(b"correct horse", auth.get_user("bob").password)


@pytest.mark.parametrize("change", [
    {"signup_password_confirmation": "correct hors"},  # the confirmation differs
    {"signup_password": "x", "signup_password_confirmation": "x"},  # too short
    {"username": "Bob!"},  # not a valid name
])
def test_a_sign_up_that_is_refused_costs_no_hashing(hashing, change):
    auth = authenticator(AUTH_MINIMUM_PASSWORD_LENGTH="8")
    hashing.clear()
    page = run_handler(auth, "/signup", {**SIGN_UP_FORM, **change})
    assert page["alert"] == "alert-danger", page
    assert hashing == [] and auth.get_user("bob") is None


def test_an_account_signed_up_twice_at_once_is_made_once():
    """Two sign-ups of one name both hashing in threads: the second finds the
    name taken when it comes back."""
    auth = authenticator()

    async def both():
        return await asyncio.gather(*(run_handler_async(auth, "/signup", SIGN_UP_FORM)
                                      for _ in range(2)))

    pages = asyncio.run(both())
    assert sorted(p["alert"] for p in pages) == ["alert-danger", "alert-info"], pages
    assert len([u for u in UserInfo.all_users(auth.db) if u.username == "bob"]) == 1

"""Logins: the password is hashed once per try, in a thread off the hub's
event loop, and not at all for a name that is locked out; lock-outs of a
day or more end. The real authenticator with the real ORM (sqlite)."""

import asyncio
import threading
from datetime import datetime, timedelta

import bcrypt
import pytest
from conftest import load_config
from test_operator import make_authenticator


@pytest.fixture
def hashing(monkeypatch):
    """The threads bcrypt.hashpw ran in, one entry per call."""
    calls = []
    real = bcrypt.hashpw

    def recording(password, salt):
        calls.append(threading.current_thread())
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", recording)
    return calls


def authenticator(**env):
    cfg = load_config(AUTH_ADMIN_USER="admin", AUTH_ADMIN_PASSWORD="correct horse", **env)
    return make_authenticator(cfg)[2]()


def login(auth, password, name="admin"):
    async def run():
        return threading.current_thread(), await auth.authenticate(
            None, {"username": name, "password": password})
    return asyncio.run(run())


def test_the_password_is_hashed_once_and_off_the_event_loop(hashing):
    auth = authenticator()
    hashing.clear()
    loop_thread, who = login(auth, "correct horse")
    assert who == "admin"
    loop_thread, who = login(auth, "wrong")
    assert who is None
    assert len(hashing) == 2, hashing
    assert all(t is not loop_thread and t.name.startswith("bcrypt") for t in hashing), hashing


def test_a_locked_out_name_costs_no_hashing(hashing):
    auth = authenticator(AUTH_ALLOWED_FAILED_LOGINS="2")
    hashing.clear()
    for _ in range(2):
        login(auth, "wrong")
    assert len(hashing) == 2
    _, who = login(auth, "correct horse")  # locked: refused without a look
    assert who is None and len(hashing) == 2, hashing


def test_a_lock_out_of_a_day_ends():
    auth = authenticator(AUTH_ALLOWED_FAILED_LOGINS="1", AUTH_SECONDS_BEFORE_NEXT_TRY="86400")
    login(auth, "wrong")
    assert auth.is_blocked("admin")
    auth.login_attempts["admin"]["time"] = datetime.now() - timedelta(days=1, seconds=5)
    assert not auth.is_blocked("admin")
    _, who = login(auth, "correct horse")
    assert who == "admin"
    # and one of an hour still holds after a day and a bit less than an hour
    auth = authenticator(AUTH_ALLOWED_FAILED_LOGINS="1", AUTH_SECONDS_BEFORE_NEXT_TRY="3600")
    login(auth, "wrong")
    auth.login_attempts["admin"]["time"] = datetime.now() - timedelta(minutes=30)
    assert auth.is_blocked("admin")


def test_the_login_page_is_the_checked_handler():
    from jupyterhub_swarm import CheckedLoginHandler, RuledSignUpHandler

    handlers = dict(authenticator().get_handlers(None))
    assert handlers["/login"] is CheckedLoginHandler
    assert handlers["/signup"] is RuledSignUpHandler
    assert "statsd" not in CheckedLoginHandler.post.__code__.co_names

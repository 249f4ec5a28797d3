"""Database URLs with passwords that need percent-encoding: the hub must
never show any piece of such a password, and must say what to do instead of
connecting to whatever host SQLAlchemy would read out of the URL.
(The real servers: tests/e2e/test_00_databases.py.)"""

import pytest

from conftest import config_error, load_config
from jupyterhub_config import parse_db_url
from jupyterhub_swarm import mask_url

RAW = "Pa@ss/wo?rd#1"  # pasted without percent-encoding


@pytest.mark.parametrize("separator", ["@", "/", "?", "#"])
def test_unencoded_password_is_refused_and_hidden(separator):
    password = f"Alpha7{separator}Bravo8:Charlie9"
    message = config_error(HUB_DB_URL=f"postgresql://jh:{password}@db:5432/jh",
                           SPAWNER_NETWORK_NAME="net")
    assert "HUB_DB_URL='postgresql://jh:***@db:5432/jh'" in message, message
    assert "percent-encode" in message
    for piece in ("Alpha7", "Bravo8", "Charlie9"):
        assert piece not in message, (piece, message)


def test_encoded_password_is_accepted():
    url = "mysql://jh:Pa%40ss%2Fwo%3Frd%231@db/jh"
    assert parse_db_url(url) == "mysql+pymysql://jh:Pa%40ss%2Fwo%3Frd%231@db/jh"
    assert mask_url(url) == "mysql://jh:***@db/jh"


@pytest.mark.parametrize("url,masked", [
    (f"postgresql://jh:{RAW}@db:5432/jh", "postgresql://jh:***@db:5432/jh"),
    ("postgresql://db/jh?user=jh&password=S3cret&sslmode=require",
     "postgresql://db/jh?user=jh&password=***&sslmode=require"),
    ("postgresql://jh@db/jh", "postgresql://jh@db/jh"),
    ("sqlite:////data/a:b@c/hub.sqlite", "sqlite:////data/a:b@c/hub.sqlite"),
])
def test_mask_url_hides_every_piece_of_the_password(url, masked):
    assert mask_url(url) == masked


def test_sqlite_paths_may_hold_at_signs():
    assert parse_db_url("sqlite:////data/a@b/hub.sqlite") == "sqlite:////data/a@b/hub.sqlite"


@pytest.mark.parametrize("key", ["password", "passwd", "PASSWORD"])
def test_a_password_in_the_query_is_refused_and_hidden(key):
    """JupyterHub masks only the URL's user part when it logs the database
    URL (debug level, and on upgrade): a password in the query would be in
    its log. Refused, naming the forms that work; the value stays hidden."""
    message = config_error(HUB_DB_URL=f"postgresql://db/jh?user=jh&{key}=Zulu4Yankee5",
                           SPAWNER_NETWORK_NAME="net")
    assert "HUB_DB_URL=" in message and "Zulu4Yankee5" not in message, message
    assert "postgresql://user:password@host/db" in message and "HUB_DB_URL_FILE" in message, message


def test_other_query_parameters_are_kept():
    url = "postgresql://jh:pw@db/jh?sslmode=require&connect_timeout=10"
    assert parse_db_url(url) == "postgresql+psycopg2://jh:pw@db/jh?sslmode=require&connect_timeout=10"


def silent_server():
    """A TCP port that accepts connections and never answers: a database
    host whose packets stop coming back."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_a_database_that_stops_answering_does_not_hold_the_hub(scheme):
    """The hub's own engine settings (db_kwargs), with the real drivers,
    against a port that never answers: the connection gives up with the
    driver's timeout instead of waiting for ever (the hub's database calls
    run on its event loop)."""
    import threading
    import time

    from sqlalchemy import create_engine

    server, held = silent_server()
    port = server.getsockname()[1]
    cfg = load_config(HUB_DB_URL=f"{scheme}://jh:pw@127.0.0.1:{port}/jh", SPAWNER_NETWORK_NAME="n")
    # JupyterHub's own default when the configuration sets none: {}
    kwargs = cfg.JupyterHub.db_kwargs if "db_kwargs" in cfg.JupyterHub else {}
    engine = create_engine(cfg.JupyterHub.db_url, **kwargs)
    outcome = {}

    def connect():
        t0 = time.monotonic()
        try:
            engine.connect()
        except Exception as e:
            outcome["error"] = str(e)
        outcome["took"] = time.monotonic() - t0

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(120)  # generous: the settings say 10 s
    server.close()
    assert not thread.is_alive(), "still connecting after 120 s"
    print(f"{scheme}: gave up after {outcome['took']:.1f}s: {outcome.get('error', '')[:120]}")
    assert "timeout" in outcome.get("error", "").lower() or \
        "timed out" in outcome.get("error", "").lower(), outcome

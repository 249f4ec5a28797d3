"""Database URLs with passwords that need percent-encoding: the hub must
never show any piece of such a password, and must say what to do instead of
connecting to whatever host SQLAlchemy would read out of the URL.
(The real servers: tests/e2e/test_00_databases.py.)"""

import pytest

from conftest import config_error
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

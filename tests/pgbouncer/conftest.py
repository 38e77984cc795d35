"""Fixtures for the tests through PgBouncer: one pooler per session, in transaction mode, in
front of the session's database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pgbouncer import Bouncer, running_pgbouncer
from tests.support.procs import workers  # noqa: F401 - fixture


@pytest.fixture(scope="session")
def bouncer(pg_session_url: str) -> Iterator[Bouncer]:
    with running_pgbouncer() as running:
        yield running


@pytest.fixture
def pooled_url(bouncer: Bouncer, pg_url: str) -> str:
    """The test database through the pooler, declared `?pooler=transaction`."""
    return bouncer.url(pg_url, query="pooler=transaction")


@pytest.fixture
def store_url(pooled_url: str) -> str:
    """What the `workers` fixture's processes get as --database-url."""
    return pooled_url


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection]:
    """A direct autocommit connection to the test database, for inspection."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _no_listen_url_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    # each test says itself whether there is a LISTEN_DATABASE_URL
    monkeypatch.delenv("LISTEN_DATABASE_URL", raising=False)

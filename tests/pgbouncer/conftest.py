"""Fixtures for the tests through PgBouncer: one pooler for the package, in transaction mode, in
front of the session's database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.postgres.conftest import backends
from tests.support.pgbouncer import Bouncer, running_pgbouncer
from tests.support.procs import workers  # noqa: F401 - fixture
from tests.support.wait import wait_until


@pytest.fixture(scope="package")
def bouncer(pg_session_url: str) -> Iterator[Bouncer]:
    """One pooler for this package's tests, gone with its pooled server connections
    before the next package's: tests elsewhere count the session database's backends."""
    with running_pgbouncer() as running:
        yield running
    with psycopg.connect(pg_session_url, autocommit=True) as conn:
        wait_until(
            lambda: not backends(conn, "conveyor"),
            timeout=10,
            message="the pooler's server connections closed",
        )


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

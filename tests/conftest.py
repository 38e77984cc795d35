"""Fixtures shared by every suite: store URLs for both stores, a clean store per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.stores import Store, open_store
from tests.support import pg

STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """A database for this test session, migrated once."""
    pg.require_postgres()
    url = pg.create_database()
    store = open_store(url)
    try:
        store.migrate()
    finally:
        store.close()
    yield url
    pg.drop_database(url)


@pytest.fixture
def pg_url(pg_session_url: str) -> str:
    """The session database, emptied for this test."""
    pg.truncate(pg_session_url)
    return pg_session_url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty store's URL, once per store kind. Each parameter is built lazily,
    so PostgreSQL being down affects only the postgres cases."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        store = open_store(url)
        store.migrate()
        store.close()
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()

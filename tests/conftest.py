"""Fixtures shared by every suite: store URLs for every store, a clean store per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from conveyor.stores import Store, open_store
from tests.support import pg
from tests.support import redis as redis_support

# Every store: the contract suite (tests/contract/conftest.py) runs on each.
STORES = ["sqlite", "postgres", "redis"]
# The stores the other suites (runtime, API, CLI, dashboard ...) run on. They pass on Redis
# too (CONVEYOR_TEST_REDIS_EVERYWHERE=1), but `make test` keeps them to the SQL stores for
# CI's time budget: the Redis store is proven there by the contract and process suites
# (their conftest.py take STORES), a chaos run and tests/redis_store.
SUITE_STORES = ["sqlite", "postgres"] + (
    ["redis"] if os.environ.get("CONVEYOR_TEST_REDIS_EVERYWHERE") == "1" else []
)


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


@pytest.fixture(scope="session")
def redis_session_url() -> Iterator[str]:
    """This session's own redis-server (tests/support/redis.py), started once."""
    with redis_support.running_redis() as url:
        yield url


@pytest.fixture
def redis_url(redis_session_url: str) -> str:
    """The session's Redis database, emptied (FLUSHDB) and migrated for this test."""
    redis_support.flush(redis_session_url)
    _migrate(redis_session_url)
    return redis_session_url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def _migrate(url: str) -> None:
    store = open_store(url)
    try:
        store.migrate()
    finally:
        store.close()


def clean_store_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty store's URL for `request.param`. Each is built lazily, so a server
    being down affects only its own cases."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        _migrate(url)
        return url
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "postgres-pooled":  # as through a transaction-mode pooler (SPEC §10)
        return str(request.getfixturevalue("pg_url")) + "?pooler=transaction"
    return str(request.getfixturevalue("pg_url"))


def store_url_over(stores: list[str]) -> Callable[..., str]:
    """A `store_url` fixture: a migrated, empty store's URL, once per store kind of
    `stores`. A suite's conftest.py that runs on every store assigns its own (STORES)."""

    @pytest.fixture(name="store_url", params=stores)
    def store_url(request: pytest.FixtureRequest) -> str:
        return clean_store_url(request)

    return store_url


store_url = store_url_over(SUITE_STORES)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()

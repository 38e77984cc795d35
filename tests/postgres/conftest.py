"""Fixtures for the PostgreSQL-only tests: a store and a plain connection to the same
(migrated, emptied) database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conveyor.stores.postgres.store import PostgresStore


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    yield store
    store.close()


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database, for setup and inspection."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def backends(conn: psycopg.Connection, application_name: str) -> list[int]:
    """Pids of this database's backends with that application_name (never other databases':
    other test sessions may share the server)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return [row[0] for row in rows]


def terminate(conn: psycopg.Connection, pids: list[int]) -> None:
    for pid in pids:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

"""Bulk actions on SQLite (SPEC §8) read each batch through an index from where the previous
one stopped, and their bounds from the status's own partial index: never a table scan."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from conveyor.stores import open_store
from conveyor.stores.sqlite.store import Q

FILTER = {"queue": "q", "type": None, "created_before": None}


@pytest.fixture
def conn(tmp_path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "jobs.db"
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    connection = sqlite3.connect(path)
    yield connection
    connection.close()


def plan(conn: sqlite3.Connection, name: str, **values: object) -> str:
    params = {**FILTER, "after": 100, "upto": 900, "limit": 500, **values}
    return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + Q[name], params))


def test_a_retry_batch_is_a_range_of_jobs_retryable(conn):
    found = plan(conn, "bulk_retry_ids", status="failed")
    assert "USING INDEX jobs_retryable (status=? AND id>? AND id<?)" in found, found


def test_a_cancel_batch_is_a_range_of_the_rowid(conn):
    found = plan(conn, "bulk_cancel_ids", status="pending")
    assert "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in found, found


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("bulk_bounds_pending", "jobs_pending"),
        ("bulk_bounds_processing", "jobs_processing"),
        ("bulk_bounds_retryable", "jobs_retryable"),
    ],
)
def test_bounds_read_the_status_own_index(conn, name, index):
    found = plan(conn, name, status="failed")
    assert f"USING INDEX {index}" in found, found

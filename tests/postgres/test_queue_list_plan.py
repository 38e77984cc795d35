"""`list_queues` never reads the jobs table row by row: its queue names come from skip scans
of the pending and processing indexes, one probe per distinct queue (docs/architecture.md,
"Where the settings live and how they change"). SQLite's counterpart is checked here too."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import psycopg
import pytest

from conveyor.stores.postgres.store import PostgresStore
from conveyor.stores.postgres.store import Q as PG_QUERIES
from conveyor.stores.sqlite.store import Q as SQLITE_QUERIES
from conveyor.stores.sqlite.store import SqliteStore
from conveyor.validation import new_job

LEASE = timedelta(seconds=30)


def _fill(store: PostgresStore | SqliteStore) -> None:
    for _ in range(4):
        store.enqueue_many([new_job("t", i, queue=f"q{i % 20:02d}") for i in range(5000)])
    store.claim(worker="w", queues=None, limit=50, lease=LEASE)
    store.configure_queue("zz", concurrency=1)


@pytest.mark.postgres
def test_postgres_skip_scans_the_indexes(pg_store: PostgresStore, admin: psycopg.Connection):
    _fill(pg_store)
    admin.execute("ANALYZE jobs")
    plan = "\n".join(
        row[0] for row in admin.execute("EXPLAIN (ANALYZE, COSTS OFF) " + PG_QUERIES["list_queues"])
    )
    assert "Index Only Scan using jobs_pending_by_queue on jobs" in plan, plan
    assert "Index Only Scan using jobs_processing on jobs" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    assert [q.name for q in pg_store.list_queues()] == [f"q{i:02d}" for i in range(20)] + ["zz"]


def test_sqlite_probes_the_indexes_once_per_queue(tmp_path):
    store = SqliteStore(tmp_path / "jobs.db")
    store.migrate()
    _fill(store)
    store.close()
    conn = sqlite3.connect(tmp_path / "jobs.db")
    conn.execute("ANALYZE")
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + SQLITE_QUERIES["list_queues"])]
    conn.close()
    assert "SEARCH jobs USING INDEX jobs_pending (queue=?)" in plan, plan
    assert "SEARCH jobs USING INDEX jobs_processing (queue=?)" in plan, plan
    assert [line for line in plan if line.startswith("SCAN")] == ["SCAN q"], plan

"""Bulk actions on PostgreSQL (SPEC §8): what they tell listening processes, and that each
batch is read through an index from where the previous one stopped, however large the
table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from conveyor.jobs import BulkFilter, JobStatus
from conveyor.stores import open_store
from conveyor.stores.base import NOTIFY_PAYLOAD_MAX
from conveyor.stores.postgres.store import PostgresStore, Q
from conveyor.validation import new_job
from tests.support import pg

pytestmark = pytest.mark.postgres

LEASE = timedelta(seconds=30)
CHANNELS = ("conveyor_finished", "conveyor_cancel", "conveyor_jobs")
MARKER = "marker"


@pytest.fixture
def listener(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for channel in CHANNELS:
            conn.execute(f"LISTEN {channel}")
        yield conn


def heard(listener: psycopg.Connection) -> list[tuple[str, str]]:
    """(channel, payload) of every notification up to a marker sent now: NOTIFYs arrive in
    commit order, so everything the action sent comes before it."""
    with psycopg.connect(listener.info.dsn, autocommit=True) as sender:
        sender.execute("SELECT pg_notify('conveyor_jobs', %s)", (MARKER,))
    seen: list[tuple[str, str]] = []
    for note in listener.notifies(timeout=10):
        if note.payload == MARKER:
            return seen
        seen.append((note.channel, note.payload))
    raise AssertionError(f"the marker never arrived; got {seen}")


def add(store: PostgresStore, n: int, queue: str = "q") -> list[int]:
    return [store.enqueue(new_job("t", None, queue=queue)).job.id for _ in range(n)]


def test_cancel_many_tells_waiters_once_and_each_run(pg_store, listener):
    running = add(pg_store, 1, queue="r")
    pg_store.claim(worker="w", queues=["r"], limit=1, lease=LEASE)
    pending = add(pg_store, 3)
    heard(listener)  # the enqueues' wake-ups
    ids = sorted(running + pending)
    assert pg_store.cancel_many(ids) == ids
    assert sorted(heard(listener)) == [
        # the run holding the processing job is told to stop
        ("conveyor_cancel", str(running[0])),
        # waiters: once per statement, the cancelled ids comma-separated
        ("conveyor_finished", ",".join(map(str, ids))),
    ]


def test_a_bulk_cancel_sends_one_notification_per_batch_under_the_payload_limit(pg_store, listener):
    ids = add(pg_store, 1203)
    heard(listener)
    assert pg_store.bulk_cancel(BulkFilter(JobStatus.PENDING, queue="q")) == 1203
    notes = heard(listener)
    finished = [payload for channel, payload in notes if channel == "conveyor_finished"]
    assert len(finished) == 3, notes  # batches of 500, 500, 203
    assert all(len(payload) <= NOTIFY_PAYLOAD_MAX for payload in finished)
    assert sorted(int(i) for payload in finished for i in payload.split(",")) == ids
    assert [channel for channel, _ in notes if channel != "conveyor_finished"] == []


def test_retry_many_wakes_fetchers_once_per_queue(pg_store, listener):
    ids = add(pg_store, 4, queue="a") + add(pg_store, 2, queue="b")
    pg_store.cancel_many(ids)
    heard(listener)
    assert pg_store.retry_many(ids) == ids
    # one transaction: PostgreSQL delivers each (channel, payload) once
    assert sorted(heard(listener)) == [("conveyor_jobs", "a"), ("conveyor_jobs", "b")]


# -- plans: each batch through an index, over a large analysed table -----------------------------
@pytest.fixture(scope="module")
def large() -> Iterator[psycopg.Connection]:
    """A database with 195,000 done jobs, 5,000 failed ones among them (three queues), and
    20,000 pending ones after them, analysed."""
    pg.require_postgres()
    url = pg.create_database()
    store = open_store(url)
    store.migrate()
    store.close()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO jobs (type, queue, payload, status, attempts, run_at, created_at,"
                " updated_at, finished_at)"
                " SELECT 't' || mod(i, 2), 'q' || mod(i, 3), 'null',"
                " CASE WHEN i > 200000 THEN 'pending'"
                "      WHEN mod(i, 40) = 0 THEN 'failed' ELSE 'done' END,"
                " 1, now(), now(), now(), CASE WHEN i <= 200000 THEN now() END"
                " FROM generate_series(1, 220000) AS i"
            )
            conn.execute("ANALYZE jobs")
            yield conn
    finally:
        pg.drop_database(url)


def explain(conn: psycopg.Connection, name: str, **values: object) -> str:
    """The plan of statement `name` as the store runs it: unprepared, planned with values."""
    params = {"queue": None, "type": None, "created_before": None, **values}
    rows = conn.execute("EXPLAIN " + Q[name], params, prepare=False).fetchall()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("queue", [None, "q1"])
def test_a_retry_batch_walks_jobs_retryable_from_where_the_last_one_stopped(large, queue):
    plan = explain(
        large, "bulk_ids", status="failed", queue=queue, after=80_000, upto=200_000, limit=500
    )
    assert re.search(r"Index (Only )?Scan using jobs_retryable", plan), plan
    assert "Index Cond: ((status = 'failed'::text) AND (id > 80000)" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("status", ["pending", "failed", "processing"])
def test_bounds_and_cancel_batches_never_scan_the_table(large, status):
    bounds = explain(large, "bulk_bounds", status=status, queue="q2")
    assert "Seq Scan" not in bounds, bounds
    batch = explain(large, "bulk_ids", status=status, after=200_500, upto=220_000, limit=500)
    assert "Seq Scan" not in batch, batch

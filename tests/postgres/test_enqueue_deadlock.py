"""Concurrent keyed enqueue_many batches on PostgreSQL cannot deadlock.

A keyed batch inserts with ON CONFLICT DO NOTHING: a speculative insertion per row, which
waits for any other open transaction that inserted the same key, and holds its own key
until it commits. Two batches that insert the same keys in different orders would each
hold a key the other waits for. The statement inserts in unique_key order, so every batch
takes its keys' locks in one global order. SQLite has one writer at a time (BEGIN
IMMEDIATE takes the write lock first), so there the same load only queues.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from contextlib import closing
from typing import Any

import psycopg
import pytest

from conveyor.errors import StoreUnavailable
from conveyor.stores import open_store
from conveyor.stores.postgres.store import PostgresStore
from conveyor.validation import new_job
from tests.postgres.conftest import backends
from tests.support.wait import wait_until

PROCESSES = 4
ROUNDS = 50  # batches per process: 200 in all
POOL = 60  # keys per round, shared by the four processes' batches of that round


def produce(url: str, index: int, barrier: Any, out: Any) -> None:
    """One producer: each round, wait for the others, then enqueue one batch of 20-50 keys
    drawn from that round's shared pool, shuffled (so the four batches of a round overlap,
    in different orders), with a few unkeyed rows. Reports what went wrong, if anything."""
    rng = random.Random(index)
    store = open_store(url)
    report: dict[str, Any] = {"index": index, "batches": 0, "deadlocks": 0, "errors": []}
    try:
        for round_ in range(ROUNDS):
            keys: list[str | None] = [
                f"r{round_}-k{j}" for j in rng.sample(range(POOL), rng.randint(20, 50))
            ]
            keys += [None] * rng.randint(0, 3)
            rng.shuffle(keys)
            batch = [new_job("t", [index, round_, i], unique_key=k) for i, k in enumerate(keys)]
            barrier.wait(timeout=60)
            try:
                results = store.enqueue_many(batch)
            except StoreUnavailable as exc:
                if "deadlock" in str(exc):
                    report["deadlocks"] += 1
                else:
                    report["errors"].append(str(exc))
                continue
            report["batches"] += 1
            if [r.job.unique_key for r in results] != keys:
                report["errors"].append(f"round {round_}: results not in input order")
            created = [r.job.id for r in results if r.created]
            if created != sorted(created):
                report["errors"].append(f"round {round_}: ids not increasing in input order")
            if any(r.job.unique_key is None and not r.created for r in results):
                report["errors"].append(f"round {round_}: an unkeyed row was not created")
    except BaseException as exc:  # a broken barrier, a crash: reported, not hung on
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        barrier.abort()
    finally:
        store.close()
        out.put(report)


def _server_deadlocks(admin: psycopg.Connection) -> int:
    row = admin.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _run_producers(url: str) -> tuple[int, int]:
    """Run the four producers to the end: (batches that succeeded, batches that failed
    with a deadlock). Any other problem fails the test."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [ctx.Process(target=produce, args=(url, i, barrier, out)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [e for r in reports for e in r["errors"]] == []
    return sum(r["batches"] for r in reports), sum(r["deadlocks"] for r in reports)


@pytest.mark.postgres
def test_concurrent_keyed_batches_in_different_orders_do_not_deadlock(pg_url, admin):
    before = _server_deadlocks(admin)
    batches, failed = _run_producers(pg_url)
    # The producers' backends have gone (their statistics are flushed when they exit).
    wait_until(lambda: not backends(admin, "conveyor"), message="producers' connections closed")
    admin.execute("SELECT pg_stat_clear_snapshot()")
    deadlocks = _server_deadlocks(admin) - before

    assert (deadlocks, failed) == (0, 0), (
        f"{deadlocks} deadlocks detected by the server, {failed} of "
        f"{PROCESSES * ROUNDS} batches failed with one"
    )
    assert batches == PROCESSES * ROUNDS
    # Every key drawn has exactly one job, unfinished (nothing ran): at most one per key.
    held = admin.execute(
        "SELECT unique_key, count(*) FROM jobs WHERE unique_key IS NOT NULL"
        " AND status IN ('pending', 'processing') GROUP BY unique_key HAVING count(*) > 1"
    ).fetchall()
    assert held == []
    keyed = admin.execute("SELECT count(*) FROM jobs WHERE unique_key IS NOT NULL").fetchone()
    distinct = admin.execute(
        "SELECT count(DISTINCT unique_key) FROM jobs WHERE unique_key IS NOT NULL"
    ).fetchone()
    assert keyed == distinct


def test_concurrent_keyed_batches_on_sqlite_queue_behind_one_writer(sqlite_url):
    store = open_store(sqlite_url)
    store.migrate()
    store.close()
    assert _run_producers(sqlite_url) == (PROCESSES * ROUNDS, 0)
    with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        keyed, distinct = db.execute(
            "SELECT count(unique_key), count(DISTINCT unique_key) FROM jobs"
        ).fetchone()
    assert keyed == distinct > 0


# -- the lock order is the insert order ------------------------------------------------------
def _held_by_another(url: str, key: str) -> bool:
    """Whether another open transaction holds `key` (has inserted it, uncommitted): an
    insert of the same key then waits, here until a short lock timeout. Rolled back."""
    with psycopg.connect(url) as conn:
        conn.execute("SET lock_timeout = '200ms'")
        try:
            conn.execute(
                "INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at,"
                " unique_key, created_at, updated_at)"
                " VALUES ('probe', 'default', 'null', 0, 1, now(), %s, now(), now())"
                " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL"
                " AND status IN ('pending', 'processing') DO NOTHING",
                (key,),
            )
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            conn.rollback()
    return False


@pytest.mark.postgres
def test_a_keyed_batch_takes_its_keys_in_key_order(pg_url, pg_store: PostgresStore):
    """While the batch waits on key b (held by an open transaction), it already holds a
    (inserted before b) and not yet c, whatever their input order: the rows are inserted,
    and their keys locked, in unique_key order."""
    with psycopg.connect(pg_url) as blocker:
        blocker.execute(
            "INSERT INTO jobs (type, queue, payload, priority, max_attempts, run_at,"
            " unique_key, created_at, updated_at)"
            " VALUES ('blocker', 'default', 'null', 0, 1, now(), 'b', now(), now())"
        )
        outcome: list[Any] = []
        batch = [new_job("t", k, unique_key=k) for k in ("c", "b", "a")]
        thread = threading.Thread(target=lambda: outcome.append(pg_store.enqueue_many(batch)))
        thread.start()
        try:
            wait_until(
                lambda: _waiting_on_lock(pg_url), message="the batch waits for key b's holder"
            )
            assert _held_by_another(pg_url, "a")
            assert not _held_by_another(pg_url, "c")
        finally:
            blocker.rollback()  # frees b: the batch goes on and inserts all three
            thread.join(10)
    assert [(r.job.unique_key, r.created) for r in outcome[0]] == [
        ("c", True),
        ("b", True),
        ("a", True),
    ]
    ids = [r.job.id for r in outcome[0]]
    assert ids == sorted(ids)  # ids still follow the input order


def _waiting_on_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'conveyor' AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])

"""SQLite-only behaviour: id allocation, the claim's query plan, cross-process wake-ups."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta

from conveyor.jobs import utcnow
from conveyor.stores.sqlite.store import Q, SqliteStore
from conveyor.validation import new_job
from tests.support.factories import add


def make(tmp_path) -> SqliteStore:
    store = SqliteStore(tmp_path / "jobs.db")
    store.migrate()
    return store


def test_prune_keeps_the_newest_row_so_ids_are_never_reused(tmp_path):
    store = make(tmp_path)
    jobs = [add(store) for _ in range(3)]
    for job in jobs:
        store.cancel(job.id)
    # all three are finished and old enough, but the newest row anchors id allocation
    assert store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1)) == 2
    assert store.get_job(jobs[-1].id) is not None
    assert add(store).id == jobs[-1].id + 1
    store.close()


def test_claim_walks_the_pending_index(tmp_path):
    store = make(tmp_path)
    store.enqueue_many([new_job("t", i, queue=f"q{i % 3}") for i in range(300)])
    conn = sqlite3.connect(store.path)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + Q["claim"],
        {"worker": "w", "now": 0, "lease_now": 0, "lease_until": 0, "limit": 10, "queues": None},
    ).fetchall()
    text = "\n".join(str(row[3]) for row in plan)
    conn.close()
    # Each queue's priority levels, one index probe each, then one index range per level.
    assert "SEARCH c USING INDEX jobs_pending (queue=?)" in text, text
    assert "SEARCH c USING INDEX jobs_pending (queue=? AND priority<?)" in text, text
    assert "SEARCH c USING INDEX jobs_pending (queue=? AND priority=? AND run_at<?)" in text, text
    # A keyed queue skips from key to key, then reads one key's range.
    assert "SEARCH c USING INDEX jobs_pending_by_key (queue=? AND concurrency_key>?)" in text
    assert "SEARCH c USING INDEX jobs_pending_by_key (queue=? AND concurrency_key=?)" in text
    # Limits count processing jobs and recent starts by index.
    assert "SEARCH r USING INDEX jobs_processing (queue=?)" in text, text
    assert "SEARCH w USING COVERING INDEX queue_starts_by_time (queue=? AND started_at>?)" in text
    # Full scans only of the small queues table, the queue filter and the statement's own
    # intermediate rows (CTEs and subqueries), never of jobs.
    scans = [line for line in text.splitlines() if line.startswith("SCAN ")]
    allowed = {"SCAN q", "SCAN l", "SCAN o", "SCAN k", "SCAN candidates"}
    for line in scans:
        assert (
            line in allowed
            or line.startswith("SCAN json_each VIRTUAL TABLE")
            or line.startswith("SCAN (subquery-")
        ), text
    store.close()


def test_another_process_commit_wakes_the_notifier(tmp_path):
    store = make(tmp_path)
    other = SqliteStore(store.path)

    async def scenario() -> float:
        notifier = store.notifier()
        await notifier.start()
        try:
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            await asyncio.to_thread(add, other)
            assert await notifier.wait(2.0)
            return time.perf_counter() - t0
        finally:
            await notifier.stop()

    assert asyncio.run(scenario()) < 0.5
    other.close()
    store.close()

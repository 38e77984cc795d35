"""Bulk retry (SPEC §8) beside running workers: does it hold the workers up?

100,000 failed jobs wait in queue `parked`, which no worker serves; two worker processes
drain queue `other` (the no-op task, which returns its start time). The figures: the other
queue's rate for a few seconds before the bulk retry and while it runs (read afterwards from
the jobs' start times, so measuring costs the workers nothing), the bulk retry's duration,
and its longest transaction: each batch's `retry_many` call timed here (on SQLite that
includes waiting for the write lock behind the workers' transactions), and on PostgreSQL
pg_stat_activity sampled every 50 ms for the oldest open transaction of the bulk's own
connections (application_name conveyor-bulk). Prints a Markdown table.

    .venv/bin/python -m bench.bulk                    # SQLite and PostgreSQL
    .venv/bin/python -m bench.bulk --stores sqlite --jobs 20000

PostgreSQL: a scratch database `conveyor_bench_bulk` on $BENCH_PG_ADMIN (default
postgresql://postgres@127.0.0.1:5432/postgres) is dropped and re-created per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.run import CONVEYOR, PG_ADMIN, ROOT, starts_of, stop_workers
from conveyor import Conveyor
from conveyor.jobs import BulkFilter, JobStatus
from conveyor.stores import Store, open_store
from conveyor.stores.base import BULK_BATCH

SCRATCH_DB = "conveyor_bench_bulk"
BULK_APP_NAME = "conveyor-bulk"
BEFORE_S = 3.0  # the other queue's rate is measured over this long before the bulk
SAMPLE_S = 0.05


def fresh_url(store: str, tmp: Path) -> str:
    if store == "sqlite":
        path = tmp / "bulk.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{path}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SCRATCH_DB}")
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + SCRATCH_DB


def start_workers(url: str, n: int, slots: int, queue: str) -> list[subprocess.Popen[bytes]]:
    """bench.run's workers, serving `queue` only."""
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    command = [CONVEYOR, "worker", "--app", "bench.app:app", "--database-url", url]
    options = ["--workers", str(slots), "--fetch-limit", str(slots), "--queues", queue]
    return [
        subprocess.Popen(
            command + options,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def enqueue(app: Conveyor, n: int, queue: str) -> None:
    for start in range(0, n, 1000):
        app.enqueue_many([{"type": "noop", "queue": queue}] * min(1000, n - start))


def fail_all(url: str, queue: str) -> None:
    """Mark every job of `queue` failed after one attempt, directly (setup only)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        now = time.time_ns() // 1000
        with conn:
            conn.execute(
                # run_at in the SET list: the counts' triggers fire on it (migration 0011)
                "UPDATE jobs SET status = 'failed', attempts = 1, max_attempts = 1,"
                " run_at = run_at, last_error = 'bench', finished_at = ?, updated_at = ?"
                " WHERE queue = ?",
                (now, now, queue),
            )
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "UPDATE jobs SET status = 'failed', attempts = 1, max_attempts = 1,"
            " last_error = 'bench', finished_at = now(), updated_at = now() WHERE queue = %s",
            (queue,),
        )
        pg.execute("VACUUM ANALYZE jobs")


@dataclass
class Timings:
    """Wall time of each call of a store method, wrapped in place."""

    calls: list[float] = field(default_factory=list)

    def wrap(self, store: Store, name: str) -> None:
        real: Callable[..., Any] = getattr(store, name)

        def timed(*args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kw)
            finally:
                self.calls.append(time.perf_counter() - start)

        setattr(store, name, timed)


class OldestTransaction(threading.Thread):
    """PostgreSQL: every SAMPLE_S, the age of the oldest open transaction of the bulk's
    connections (pg_stat_activity.xact_start), and whether one of them waited for a lock."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self._url = url
        self._done = threading.Event()
        self.oldest = 0.0
        self.samples = 0
        self.lock_waits = 0

    def run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._done.wait(SAMPLE_S):
                age, waiting = conn.execute(
                    "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0),"
                    " count(*) FILTER (WHERE wait_event_type = 'Lock')"
                    " FROM pg_stat_activity"
                    " WHERE application_name = %s AND xact_start IS NOT NULL"
                    " AND datname = current_database()",
                    (BULK_APP_NAME,),
                ).fetchone()
                self.oldest = max(self.oldest, float(age))
                self.lock_waits += int(waiting)
                self.samples += 1

    def stop(self) -> None:
        self._done.set()
        self.join()


@dataclass
class Result:
    store: str
    before: float
    during: float
    after: float
    duration: float
    retried: int
    batches: int
    median_batch: float
    longest_held: float | None
    longest_batch: float
    longest_read: float
    bounds: float
    sampled_oldest: float | None
    samples: int
    lock_waits: int


def rate(starts: Sequence[float], low: float, high: float) -> float:
    return sum(1 for s in starts if low <= s < high) / (high - low)


def bench(store_kind: str, tmp: Path, jobs: int, other: int, procs: int, slots: int) -> Result:
    url = fresh_url(store_kind, tmp)
    with Conveyor(url) as app:
        enqueue(app, jobs, "parked")
        fail_all(url, "parked")
        enqueue(app, other, "other")
        workers = start_workers(url, procs, slots, "other")
        try:
            deadline = time.time() + 60
            while app.stats().get("other", {}).get("done", 0) < 1000:
                if time.time() > deadline:
                    raise TimeoutError("workers did not start")
                time.sleep(0.05)
            time.sleep(BEFORE_S)  # the "before" window (measured afterwards)
            bulk_url = url if store_kind == "sqlite" else f"{url}?application_name={BULK_APP_NAME}"
            bulk_store = open_store(bulk_url)
            batches, reads, bounds = Timings(), Timings(), Timings()
            batches.wrap(bulk_store, "retry_many")
            held = Timings()  # SQLite: the statements inside the write transaction
            if store_kind == "sqlite":
                held.wrap(bulk_store, "_retry_ids")
            reads.wrap(bulk_store, "bulk_ids")
            bounds.wrap(bulk_store, "bulk_bounds")
            sampler = OldestTransaction(url) if store_kind == "postgres" else None
            if sampler is not None:
                sampler.start()
            t0 = time.time()
            retried = bulk_store.bulk_retry(BulkFilter(JobStatus.FAILED, queue="parked"))
            t1 = time.time()
            if sampler is not None:
                sampler.stop()
            bulk_store.close()
            time.sleep(2.0)  # the "after" window
            t2 = time.time()
            left = app.stats().get("other", {}).get("pending", 0)
        finally:
            stop_workers(workers)
        if left == 0:
            print(f"# {store_kind}: the other queue ran dry: raise --other", file=sys.stderr)
        parked = app.stats().get("parked", {})
        assert parked == {"pending": jobs}, parked  # retried, and nobody took them
        starts = starts_of(app, "other")
    return Result(
        store=store_kind,
        before=rate(starts, t0 - BEFORE_S, t0),
        during=rate(starts, t0, t1),
        after=rate(starts, t1, t2),
        duration=t1 - t0,
        retried=retried,
        batches=len(batches.calls),
        median_batch=statistics.median(batches.calls),
        longest_held=max(held.calls) if held.calls else None,
        longest_batch=max(batches.calls),
        longest_read=max(reads.calls),
        bounds=bounds.calls[0],
        sampled_oldest=None if sampler is None else sampler.oldest,
        samples=0 if sampler is None else sampler.samples,
        lock_waits=0 if sampler is None else sampler.lock_waits,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=100_000, help="failed jobs to retry")
    parser.add_argument("--other", type=int, default=200_000, help="no-op jobs to drain")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--slots", type=int, default=10)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for store in args.stores.split(","):
            results.append(
                bench(store, Path(tmpdir), args.jobs, args.other, args.procs, args.slots)
            )
            print(f"# {store}: done", file=sys.stderr, flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"Conveyor bulk retry bench, {when}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.jobs:,} failed jobs retried in batches "
        f"of {BULK_BATCH} beside {args.procs} worker processes ({args.slots} slots each) "
        "draining no-op jobs of another queue\n"
    )
    print(
        "| store | other queue before, jobs/s | during | after | bulk retry s | retried "
        "| batches | batch (transaction) ms, median / longest | of which in the write lock, "
        "longest | longest batch read ms | bounds ms "
        "| oldest bulk transaction sampled ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        sampled = (
            "n/a (SQLite)"
            if r.sampled_oldest is None
            else f"{r.sampled_oldest * 1000:.1f} ({r.samples} samples, {r.lock_waits} lock waits)"
        )
        print(
            f"| {r.store} | {r.before:,.0f} | {r.during:,.0f} ({r.during / r.before:.0%}) "
            f"| {r.after:,.0f} | {r.duration:.2f} | {r.retried:,} | {r.batches} "
            f"| {r.median_batch * 1000:.1f} / {r.longest_batch * 1000:.1f} "
            f"| {'n/a' if r.longest_held is None else f'{r.longest_held * 1000:.1f}'} "
            f"| {r.longest_read * 1000:.1f} "
            f"| {r.bounds * 1000:.1f} | {sampled} |"
        )


if __name__ == "__main__":
    main()

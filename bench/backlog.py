"""Claim cost is flat in the backlog: drain rate with 20,000 pending jobs vs 1,000,000
pending, vs 20,000 pending beside 1,000,000 finished jobs, and vs 20,000 pending beside
1,000,000 jobs scheduled for tomorrow at a higher priority.

    .venv/bin/python -m bench.backlog --stores sqlite,postgres [--big 1000000]

The rate is measured in steady state, from the start times of the 2,000th and the
12,000th job, with 2 worker processes x 10 slots.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.run import fresh_url, start_workers, stop_workers
from conveyor import Conveyor
from conveyor.jobs import Finish, JobStatus

BATCH = 10_000


def fill(app: Conveyor, n: int, **options: object) -> list[int]:
    ids: list[int] = []
    item = {"type": "noop", **options}
    for start in range(0, n, BATCH):
        ids += [j.id for j in app.enqueue_many([item] * min(BATCH, n - start))]
    return ids


def finish_all(app: Conveyor) -> None:
    """Move every pending job to done through the store API (claim + complete)."""
    lease = timedelta(seconds=300)
    while True:
        jobs = app.store.claim(worker="filler", queues=None, limit=BATCH, lease=lease)
        if not jobs:
            return
        app.store.finish_many([Finish.done(j.lease_ref(), "0") for j in jobs])


def settle(url: str) -> None:
    """A table that holds a million finished (or scheduled) jobs got there over time, with
    autovacuum keeping up; here they were written seconds ago and, for finished jobs, their
    dead row versions (two per job) would all still sit in the pending index. Vacuum and
    analyse once, as autovacuum would have."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE jobs")


def steady_rate(url: str, ids: list[int], lo: int = 2_000, hi: int = 12_000) -> float:
    """Jobs are claimed in id order here (same priority, run_at by batch), and each no-op
    returns its start time: the rate is (hi - lo) / (start[hi] - start[lo]). Polling one
    job by primary key keeps the measurement from loading the store."""
    with Conveyor(url) as app:
        workers = start_workers(url, 2, 10)
        try:
            deadline = time.time() + 600
            while app.get_job(ids[hi]).status != JobStatus.DONE:
                if time.time() > deadline:
                    raise TimeoutError("drain did not reach the measuring window")
                time.sleep(0.05)
        finally:
            stop_workers(workers)
        t_lo = float(app.get_job(ids[lo]).result)  # type: ignore[union-attr, arg-type]
        t_hi = float(app.get_job(ids[hi]).result)  # type: ignore[union-attr, arg-type]
    return (hi - lo) / (t_hi - t_lo)


def scenario(store: str, tmp: Path, pending: int, finished: int = 0, scheduled: int = 0) -> float:
    url = fresh_url(store, tmp)
    with Conveyor(url) as app:
        if finished:
            fill(app, finished)
            finish_all(app)
            settle(url)
        if scheduled:
            fill(app, scheduled, priority=1, delay=86_400)
            settle(url)
        ids = fill(app, pending)
    return steady_rate(url, ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument(
        "--history-only", action="store_true", help="only the 20k pending + 1M finished scenario"
    )
    args = parser.parse_args()
    print(
        "| store | 20k pending jobs/s | 1M pending jobs/s | 20k pending + 1M done jobs/s "
        "| 20k pending + 1M scheduled at a higher priority jobs/s | worst / best |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for store in args.stores.split(","):
            if args.history_only:
                history = scenario(store, tmp, 20_000, finished=args.big)
                print(f"| {store} | | | {history:,.0f} | | |", flush=True)
                continue
            small = scenario(store, tmp, 20_000)
            print(f"# {store} small: {small:,.0f}", file=sys.stderr, flush=True)
            big = scenario(store, tmp, args.big)
            print(f"# {store} big pending: {big:,.0f}", file=sys.stderr, flush=True)
            history = scenario(store, tmp, 20_000, finished=args.big)
            print(f"# {store} history: {history:,.0f}", file=sys.stderr, flush=True)
            future = scenario(store, tmp, 20_000, scheduled=args.big)
            rates = [small, big, history, future]
            print(
                f"| {store} | {small:,.0f} | {big:,.0f} | {history:,.0f} | {future:,.0f} "
                f"| {min(rates) / max(rates):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

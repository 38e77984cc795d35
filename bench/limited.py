"""A binding concurrency limit across worker processes (SPEC §7): how fully the fleet keeps
a `concurrency=C` queue's slots busy. `--jobs` jobs of bench/app.py's 10 ms task
(`sleep10ms`) in one queue limited to `--concurrency`, drained by `--workers` processes
of `--slots` slots each, all enqueued before the workers start. Prints jobs/s from the
first start to the last finish (the store's timestamps), the ceiling the limit allows
(C / 10 ms), their ratio (slot use), and the longest pause between two starts.

    .venv/bin/python -m bench.limited                    # SQLite and PostgreSQL
    .venv/bin/python -m bench.limited --stores postgres --concurrency 4 --workers 4

PostgreSQL: the scratch database `conveyor_bench_limited` on $BENCH_PG_ADMIN (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped and re-created per run.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.run import fresh_url, start_workers, stop_workers, wait_drained
from bench.workflows import commit, jobs_in
from conveyor import Conveyor

QUEUE = "limited"
TASK_S = 0.01  # bench/app.py's sleep10ms


def drain(url: str, jobs: int, concurrency: int, workers: int, slots: int) -> tuple[float, float]:
    """jobs/s, and the longest pause between two consecutive starts in seconds."""
    with Conveyor(url) as app:
        app.store.migrate()
        app.configure_queue(QUEUE, concurrency=concurrency)
        added = app.enqueue_many([{"type": "sleep10ms", "queue": QUEUE}] * jobs)
        procs = start_workers(url, workers, slots)
        try:
            wait_drained(app)
        finally:
            stop_workers(procs)
        ran = jobs_in(app, added[0].id, added[-1].id)
    starts = sorted(j.started_at for j in ran if j.started_at is not None)
    end = max(j.finished_at for j in ran if j.finished_at is not None)
    pause = max((b - a).total_seconds() for a, b in itertools.pairwise(starts))
    return jobs / (end - starts[0]).total_seconds(), pause


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--slots", type=int, default=4, help="slots per process")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ceiling = args.concurrency / TASK_S
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {commit()}, {platform.node()}: "
        f"{args.jobs} jobs of 10 ms, concurrency={args.concurrency}, "
        f"{args.workers} processes x {args.slots} slots; ceiling {ceiling:.0f} jobs/s\n"
    )
    print("| store | jobs/s | slot use | longest pause between starts |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmpdir:
        for store in args.stores.split(","):
            for _ in range(args.repeats):
                url = fresh_url(store, Path(tmpdir), "conveyor_bench_limited")
                rate, pause = drain(url, args.jobs, args.concurrency, args.workers, args.slots)
                print(f"| {store} | {rate:,.0f} | {rate / ceiling:.0%} | {pause * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

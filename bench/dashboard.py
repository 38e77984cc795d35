"""What the dashboard's reads cost with 1,000,000 jobs in the store: GET /overview, the first
page of GET /jobs and of GET /jobs?status=failed, through the ASGI app (no network), median
of 20 calls each, per store. Prints a Markdown table, beside the count the overview replaced
(a GROUP BY over every job) for comparison.

    .venv/bin/python -m bench.dashboard                  # SQLite and PostgreSQL
    .venv/bin/python -m bench.dashboard --stores sqlite --jobs 200000

The store is filled by SQL (a recursive CTE on SQLite, generate_series on PostgreSQL) with
the same triggers a real store runs, so the maintained counts are exactly the jobs': most are
done, 1% failed, 0.5% cancelled, 5,000 pending and 100 processing, over three queues. An hour
of per-minute aggregates is written as eight busy sessions would leave it, and ten workers
are registered. PostgreSQL: a scratch database `conveyor_dashboard_bench` on
$BENCH_PG_ADMIN.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

from bench.run import fresh_url
from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.fleet import WorkerInfo
from conveyor.jobs import utcnow
from conveyor.metrics import Metrics
from conveyor.settings import Settings

PENDING = 5_000
PROCESSING = 100
QUEUES = 3
SHARDS = 8  # sessions whose aggregates an hour holds (PostgreSQL shards them by session)

# status of job i (1-based): the last PENDING + PROCESSING jobs are unfinished; of the others,
# one in 100 failed, one in 200 cancelled, the rest done
SQLITE_FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :total)
INSERT INTO jobs (type, queue, payload, status, attempts, run_at, created_at, updated_at,
                  started_at, finished_at, worker, lease_expires_at)
SELECT 'bench', 'q' || (i % {QUEUES}), '{{"n": 1}}', status, 1, :now, :now, :now, :now,
       CASE WHEN status IN ('done', 'failed', 'cancelled') THEN :now END,
       CASE WHEN status = 'processing' THEN 'w' END,
       CASE WHEN status = 'processing' THEN :now + 3600000000 END
FROM (SELECT i, CASE WHEN i > :total - {PROCESSING} THEN 'processing'
                     WHEN i > :total - {PROCESSING + PENDING} THEN 'pending'
                     WHEN i % 100 = 0 THEN 'failed'
                     WHEN i % 200 = 1 THEN 'cancelled'
                     ELSE 'done' END AS status
      FROM n)
"""
PG_FILL = f"""
INSERT INTO jobs (type, queue, payload, status, attempts, run_at, created_at, updated_at,
                  started_at, finished_at, worker, lease_expires_at)
SELECT 'bench', 'q' || (i %% {QUEUES}), '{{"n": 1}}', status, 1, now(), now(), now(), now(),
       CASE WHEN status IN ('done', 'failed', 'cancelled') THEN now() END,
       CASE WHEN status = 'processing' THEN 'w' END,
       CASE WHEN status = 'processing' THEN now() + interval '1 hour' END
FROM (SELECT i, CASE WHEN i > %(total)s - {PROCESSING} THEN 'processing'
                     WHEN i > %(total)s - {PROCESSING + PENDING} THEN 'pending'
                     WHEN i %% 100 = 0 THEN 'failed'
                     WHEN i %% 200 = 1 THEN 'cancelled'
                     ELSE 'done' END AS status
      FROM generate_series(1, %(total)s) AS i) AS s
"""
# An hour of aggregates: per minute, queue and session, a few pairs of buckets.
SQLITE_MINUTES = f"""
WITH RECURSIVE m(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM m WHERE k < 59),
b(w, r) AS (VALUES (3, 5), (4, 5), (4, 6), (5, 6), (6, 7), (9, 9))
INSERT INTO job_minutes (minute, queue, wait_bucket, run_bucket, finished, failed, retried)
SELECT :minute - k, 'q' || q.value, w, r, 40 * {SHARDS}, {SHARDS}, 2 * {SHARDS}
FROM m, b, json_each('[0, 1, 2]') AS q
"""
PG_MINUTES = f"""
INSERT INTO job_minutes (minute, queue, shard, wait_bucket, run_bucket, finished, failed,
                         retried)
SELECT date_trunc('minute', now()) - k * interval '1 minute', 'q' || q, s, w, r, 40, 1, 2
FROM generate_series(0, 59) AS k, generate_series(0, {QUEUES - 1}) AS q,
     generate_series(1, {SHARDS}) AS s,
     (VALUES (3, 5), (4, 5), (4, 6), (5, 6), (6, 7), (9, 9)) AS b (w, r)
"""
OLD_COUNT = "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"


def fill(url: str, total: int) -> float:
    """Fill a fresh store; returns the seconds it took."""
    started = time.monotonic()
    app = Conveyor(url)
    app.store.migrate()
    now = utcnow()
    if url.startswith("sqlite"):
        from conveyor.stores.sqlite.store import to_us

        conn = app.store.connect()  # type: ignore[attr-defined]
        with conn:
            conn.execute(SQLITE_FILL, {"total": total, "now": to_us(now)})
            conn.execute(SQLITE_MINUTES, {"minute": to_us(now) // 60_000_000})
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PG_FILL, {"total": total})
            conn.execute(PG_MINUTES)
            conn.execute("VACUUM ANALYZE")
    for n in range(10):
        worker = WorkerInfo(f"bench-{n}", "bench", 1000 + n, None, 10, 5, "bench", now, now)
        app.store.register_worker(worker, lease=timedelta(hours=1))
    app.close()
    return time.monotonic() - started


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm: connections, prepared statements, page cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def time_api(url: str, repeat: int) -> dict[str, float]:
    app = Conveyor(url)
    api = create_app(app, Settings(_env_file=None, api_token=None), Metrics())  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=api)
    out: dict[str, float] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for name, path in (
            ("GET /overview", "/overview"),
            ("GET /jobs", "/jobs"),
            ("GET /jobs?status=failed", "/jobs?status=failed"),
        ):
            times = []
            for i in range(repeat + 1):
                started = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                if i:  # the first call warms up
                    times.append(elapsed)
            out[name] = statistics.median(times)
    out["stats()"] = median_ms(app.stats, repeat)
    out["GROUP BY over all jobs (before)"] = median_ms(lambda: _old_count(app), repeat)
    app.close()
    return out


def _old_count(app: Conveyor) -> object:
    store = app.store
    if app.database_url.startswith("sqlite"):
        return store._read(OLD_COUNT)  # type: ignore[attr-defined]
    return store._run(lambda cur: cur.execute(OLD_COUNT).fetchall())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            url = fresh_url(store, Path(tmp), "conveyor_dashboard_bench")
            took = fill(url, args.jobs)
            print(f"# {store}: {args.jobs:,} jobs written in {took:.1f}s", flush=True)
            results[store] = asyncio.run(time_api(url, args.repeat))
    names = list(next(iter(results.values())))
    print(f"\n{args.jobs:,} jobs; median of {args.repeat} calls, ms\n")
    print("| store | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for store, figures in results.items():
        print(f"| {store} | " + " | ".join(f"{figures[n]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()

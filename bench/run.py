"""Conveyor's own figures: enqueue rates, drain rate with 1 and 2 worker processes,
enqueue-to-start latency with idle workers. Prints a Markdown table.

    .venv/bin/python -m bench.run                 # SQLite and PostgreSQL
    .venv/bin/python -m bench.run --stores sqlite --drain-n 20000

PostgreSQL: a scratch database `conveyor_bench` on $BENCH_PG_ADMIN
(default postgresql://postgres@127.0.0.1:5432/postgres) is dropped and re-created per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from conveyor import Conveyor
from conveyor.jobs import JobFilter, JobStatus

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh_url(store: str, tmp: Path, name: str = "conveyor_bench") -> str:
    """An empty store: the SQLite file `name`.db in tmp, or the PostgreSQL scratch database
    `name` (another name lets a benchmark keep two stores, or run beside bench.run)."""
    if store == "sqlite":
        path = tmp / ("bench.db" if name == "conveyor_bench" else f"{name}.db")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def start_workers(url: str, n: int, slots: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    return [
        subprocess.Popen(
            [
                CONVEYOR,
                "worker",
                "--app",
                "bench.app:app",
                "--database-url",
                url,
                "--workers",
                str(slots),
                "--fetch-limit",
                str(slots),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def unfinished(app: Conveyor) -> int:
    return sum(c.get("pending", 0) + c.get("processing", 0) for c in app.store.stats().values())


def wait_drained(app: Conveyor, timeout: float = 300) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if unfinished(app) == 0:
            return time.time()
        time.sleep(0.02)
    raise TimeoutError("jobs did not drain")


def bench_enqueue(url: str, n_single: int, n_bulk: int) -> tuple[float, float]:
    with Conveyor(url) as app:
        app.enqueue("noop")  # connect + schema outside the timing
        t0 = time.perf_counter()
        for _ in range(n_single):
            app.enqueue("noop")
        single = n_single / (time.perf_counter() - t0)
        batch = [{"type": "noop"}] * 1000
        t0 = time.perf_counter()
        for _ in range(n_bulk // 1000):
            app.enqueue_many(batch)
        bulk = n_bulk / (time.perf_counter() - t0)
    return single, bulk


def bench_drain(url: str, n: int, procs: int, slots: int) -> float:
    with Conveyor(url) as app:
        for _ in range(n // 1000):
            app.enqueue_many([{"type": "noop"}] * 1000)
        workers = start_workers(url, procs, slots)
        try:
            done = wait_drained(app)
        finally:
            stop_workers(workers)
        first_start = min(
            float(j.result) for j in app.store.list_jobs(JobFilter(limit=1000, before_id=1001))
        )
        failed = sum(c.get("failed", 0) for c in app.store.stats().values())
        assert failed == 0, f"{failed} jobs failed"
    return n / (done - first_start)


def starts_of(app: Conveyor, queue: str) -> list[float]:
    """The start times (the noop task's result) of every job of `queue`."""
    starts: list[float] = []
    before: int | None = None
    while True:
        page = app.list_jobs(queue=queue, limit=1000, before_id=before)
        if not page:
            return starts
        starts += [float(j.result) for j in page if j.result is not None]  # type: ignore[arg-type]
        before = page[-1].id


def bench_settings(
    url: str, n: int, procs: int, slots: int, **settings: object
) -> tuple[float, float]:
    """Drain n/2 jobs of a queue with `settings` beside n/2 of an unlimited queue, both
    enqueued before the workers start: jobs/s of each, from first to last start."""
    with Conveyor(url) as app:
        app.configure_queue("limited", **settings)  # type: ignore[arg-type]
        keys = 100 if settings.get("fair") or settings.get("key_concurrency") else 0
        half = n // 2
        for start in range(0, half, 1000):
            app.enqueue_many(
                [
                    {"type": "noop", "queue": "limited"}
                    | ({"concurrency_key": f"k{i % keys}"} if keys else {})
                    for i in range(start, start + 1000)
                ]
            )
            app.enqueue_many([{"type": "noop", "queue": "free"}] * 1000)
        workers = start_workers(url, procs, slots)
        try:
            wait_drained(app)
        finally:
            stop_workers(workers)
        rates = []
        for queue in ("limited", "free"):
            starts = starts_of(app, queue)
            rates.append(len(starts) / (max(starts) - min(starts)))
    return rates[0], rates[1]


def bench_latency(url: str, n: int, procs: int, slots: int) -> tuple[float, float]:
    with Conveyor(url) as app:
        workers = start_workers(url, procs, slots)
        try:
            warm = app.enqueue("noop")
            deadline = time.time() + 30
            while app.get_job(warm.id).status != JobStatus.DONE:
                if time.time() > deadline:
                    raise TimeoutError("workers did not start")
                time.sleep(0.02)
            time.sleep(2.0)  # idle
            sent: list[tuple[int, float]] = []
            for _ in range(n):
                t = time.time()
                sent.append((app.enqueue("noop").id, t))
                time.sleep(0.02)
            wait_drained(app)
        finally:
            stop_workers(workers)
        lat = sorted((float(app.get_job(i).result) - t) * 1000 for i, t in sent)
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--drain-n", type=int, default=10_000)
    parser.add_argument("--single-n", type=int, default=2_000)
    parser.add_argument("--bulk-n", type=int, default=20_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--slots", type=int, default=10)
    args = parser.parse_args()
    rows = []
    flow = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for store in args.stores.split(","):
            single, bulk = bench_enqueue(fresh_url(store, tmp), args.single_n, args.bulk_n)
            drain1 = bench_drain(fresh_url(store, tmp), args.drain_n, 1, args.slots)
            drain2 = bench_drain(fresh_url(store, tmp), args.drain_n, 2, args.slots)
            p50, p99 = bench_latency(fresh_url(store, tmp), args.latency_n, 2, args.slots)
            rows.append((store, single, bulk, drain1, drain2, p50, p99))
            n, slots = args.drain_n, args.slots
            limited = bench_settings(fresh_url(store, tmp), n, 2, slots, concurrency=20)
            fair = bench_settings(fresh_url(store, tmp), n, 2, slots, fair=True)
            flow.append((store, drain2, *limited, *fair))
            print(f"# {store}: done", file=sys.stderr, flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"Conveyor bench, {when}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; drain N={args.drain_n} no-op async jobs, "
        f"{args.slots} slots per process\n"
    )
    print(
        "| store | enqueue single jobs/s | enqueue_many jobs/s | drain 1 proc jobs/s "
        "| drain 2 procs jobs/s | latency p50 ms | latency p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for store, single, bulk, d1, d2, p50, p99 in rows:
        print(
            f"| {store} | {single:,.0f} | {bulk:,.0f} | {d1:,.0f} | {d2:,.0f} "
            f"| {p50:.1f} | {p99:.1f} |"
        )
    print(
        "\nFlow control, 2 procs: N/2 jobs of a queue with settings beside N/2 of an "
        "unlimited queue, jobs/s of each from first to last start\n"
    )
    print(
        "| store | no settings (drain 2 procs) | concurrency=20 queue | beside it, unlimited "
        "| fair, 100 keys | beside it, unlimited |"
    )
    print("|---|---|---|---|---|---|")
    for store, plain, limited, free1, fair, free2 in flow:
        print(
            f"| {store} | {plain:,.0f} | {limited:,.0f} | {free1:,.0f} | {fair:,.0f} "
            f"| {free2:,.0f} |"
        )


if __name__ == "__main__":
    main()

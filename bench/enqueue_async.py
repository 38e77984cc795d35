"""Enqueueing from async code: which way keeps the event loop free, and how fast it is.

100 coroutines enqueue concurrently (each one job after another) while a ticker coroutine
sleeps 10 ms in a loop and records how late it wakes. Per approach, store and event loop
it prints enqueues/s (median over the repeats), the ticker's 99th percentile lateness (of
all ticks of all repeats) and its worst lateness (median of the repeats' worst, and the
worst of all). `idle` is the floor: the ticker alone, as long as a `to_thread` run lasts.
Approaches:

- `blocking`: the sync `app.enqueue` called in the coroutine (what to avoid; the baseline)
- `to_thread`: `asyncio.to_thread(app.enqueue, ...)`, the loop's default executor
  (min(32, cpus + 4) threads, each with its own store connection)
- `app_threads`: `app.enqueue_async` (the app's own ASYNC_THREADS threads)
- `pg_async_pool`: PostgreSQL only, psycopg's AsyncConnectionPool running the store's own
  `enqueue` statement on the loop (4 connections, like the store's pool; and 8)

    .venv/bin/python -m bench.enqueue_async                     # both stores, both loops
    .venv/bin/python -m bench.enqueue_async --stores sqlite --jobs 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import uvloop

from bench.run import fresh_url
from conveyor import Conveyor, Job
from conveyor.app import ASYNC_THREADS

COROUTINES = 100
TICK_S = 0.01

Enqueue = Callable[[int], Awaitable[object]]


def make_app(url: str) -> Conveyor:
    app = Conveyor(url)

    @app.task
    def work(n: int) -> int:
        return n

    app.store  # open (and migrate) outside the measurement  # noqa: B018
    return app


async def ticker(stop: asyncio.Event) -> list[float]:
    late = []
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK_S)
        late.append(time.perf_counter() - start - TICK_S)
    return late


async def measure(enqueue: Enqueue, jobs: int) -> tuple[float, list[float]]:
    """(enqueues/s, each tick's lateness in ms) for `jobs` enqueues from COROUTINES."""
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop))
    await asyncio.sleep(TICK_S * 3)  # the ticker is running

    async def producer(first: int) -> None:
        for n in range(first, jobs, COROUTINES):
            await enqueue(n)

    start = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(COROUTINES)))
    elapsed = time.perf_counter() - start
    stop.set()
    return jobs / elapsed, [late * 1000 for late in await tick]


async def idle(seconds: float) -> tuple[float, list[float]]:
    """The floor: the ticker alone for `seconds`."""
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop))
    await asyncio.sleep(seconds)
    stop.set()
    return 0.0, [late * 1000 for late in await tick]


class PgAsyncPool:
    """The async-driver alternative: the store's `enqueue` statement through psycopg's
    AsyncConnectionPool, on the loop. Validation is the app's; the Job is built as the
    store builds it."""

    def __init__(self, app: Conveyor, size: int) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        from conveyor.stores.postgres.store import PostgresStore

        store = app.store
        assert isinstance(store, PostgresStore)
        self.app = app
        self.pool = AsyncConnectionPool(
            store.conninfo("bench-async"),
            min_size=size,
            max_size=size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
        )

    async def __aenter__(self) -> PgAsyncPool:
        await self.pool.open(wait=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def enqueue(self, n: int) -> Job:
        from conveyor.payloads import decode
        from conveyor.stores.postgres.store import Q, _ts, _utc

        job = self.app.build_job("work", {"n": n})
        params: dict[str, Any] = {
            "type": job.type,
            "queue": job.queue,
            "payload": job.payload_json,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "run_at": _ts(job.run_at),
            "unique_key": job.unique_key,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["enqueue"], params)
            row: Any = await cur.fetchone()
        at = _utc(row["created_at"])
        self.app._woken()
        return job.as_inserted(row["id"], run_at=at, at=at, payload=decode(job.payload_json))


async def run_one(app: Conveyor, approach: str, jobs: int) -> tuple[float, list[float]]:
    if approach == "idle":
        return await idle(0.5)
    if approach == "blocking":

        async def blocking(n: int) -> object:
            return app.enqueue("work", {"n": n})

        return await measure(blocking, jobs)
    if approach == "to_thread":
        return await measure(lambda n: asyncio.to_thread(app.enqueue, "work", {"n": n}), jobs)
    if approach.startswith("app_threads"):
        # app_threads: the app's own ASYNC_THREADS; app_threads_N: N threads instead
        count = int(approach.rsplit("_", 1)[1]) if approach[-1].isdigit() else ASYNC_THREADS
        app.close()  # shuts the app's threads down; the next call starts new ones
        with patch("conveyor.app.ASYNC_THREADS", count):
            await app.get_job_async(1)  # starts the threads and reopens the store
        return await measure(lambda n: app.enqueue_async("work", {"n": n}), jobs)
    if approach.startswith("pg_async_pool"):
        async with PgAsyncPool(app, int(approach.rsplit("_", 1)[1])) as pool:
            return await measure(pool.enqueue, jobs)
    raise ValueError(approach)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="", help="also app_threads_N for these N, e.g. 1,2,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| store | loop | approach | enqueues/s | lateness ms: p99 | worst (median / max) |")
        print("|---|---|---|---|---|---|")
        for store in args.stores.split(","):
            approaches = ["idle", "blocking", "to_thread", "app_threads"]
            approaches += [f"app_threads_{n}" for n in args.threads.split(",") if n]
            if store == "postgres":
                approaches += ["pg_async_pool_4", "pg_async_pool_8"]
            for loop_name in args.loops.split(","):
                runner = asyncio.run if loop_name == "asyncio" else uvloop.run
                app = make_app(fresh_url(store, Path(tmp)))
                figures: dict[str, list[tuple[float, list[float]]]] = {a: [] for a in approaches}
                try:
                    for _ in range(args.repeats):  # interleaved: the machine's speed drifts
                        for approach in approaches:
                            figures[approach].append(runner(run_one(app, approach, args.jobs)))
                finally:
                    app.close()
                for approach, runs in figures.items():
                    rate = statistics.median(r for r, _ in runs)
                    ticks = sorted(late for _, lates in runs for late in lates)
                    p99 = ticks[min(len(ticks) - 1, int(len(ticks) * 0.99))]
                    worst = [max(lates) for _, lates in runs]
                    print(
                        f"| {store} | {loop_name} | {approach} | {rate:,.0f} | {p99:.1f} "
                        f"| {statistics.median(worst):.1f} / {max(worst):.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()

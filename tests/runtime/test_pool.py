"""The worker runtime in-process, on both stores: outcomes, timeouts, cancellation, slots."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from conveyor import Conveyor
from conveyor.jobs import JobStatus
from conveyor.logs import JsonFormatter
from conveyor.metrics import Metrics
from conveyor.validation import new_job
from conveyor.worker import PoolConfig, WorkerPool
from tests.support.wait import async_wait_until


def make_app(url: str) -> Conveyor:
    app = Conveyor(url)
    gate = threading.Event()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(timeout=0.2, max_attempts=1)
    async def too_slow() -> None:
        await asyncio.sleep(30)

    @app.task(timeout=0.2, max_attempts=1)
    def too_slow_sync() -> None:
        gate.wait(30)  # a sync task that ignores its timeout keeps its thread

    @app.task(max_attempts=3)
    def unstorable() -> object:
        return {1, 2, 3}

    @app.task
    async def forever(seconds: float = 30) -> None:
        await asyncio.sleep(seconds)

    @app.task(max_attempts=2)
    def boom() -> None:
        raise ValueError("no good")

    @app.task(max_attempts=1)
    def garbled() -> None:
        raise ValueError("nul\x00 and a lone surrogate \udc80")

    app.gate = gate  # type: ignore[attr-defined]
    return app


async def serve(app: Conveyor, body, **config) -> Metrics:
    metrics = Metrics()
    pool = WorkerPool(
        app, PoolConfig(**{"concurrency": 4, "fetch_interval": 60, **config}), metrics=metrics
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    await pool.ready.wait()
    try:
        await body(pool)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
    return metrics


def status_of(app: Conveyor, job_id: int) -> str:
    return app.get_job(job_id).status.value


@pytest.fixture
def app(store_url):
    app = make_app(store_url)
    yield app
    app.gate.set()
    app.close()


def test_local_enqueue_wakes_an_idle_pool_at_once(app):
    async def body(pool):
        await asyncio.sleep(0.2)  # let the fetcher go idle (fetch_interval is 60 s)
        started = time.monotonic()
        job = app.enqueue("add", {"a": 2, "b": 3})
        await async_wait_until(lambda: status_of(app, job.id) == "done", timeout=5)
        assert time.monotonic() - started < 1.0
        assert app.get_job(job.id).result == 5

    metrics = asyncio.run(serve(app, body))
    assert metrics.processed == 1


def test_failures_timeouts_and_bad_results_end_failed_with_clear_errors(app):
    async def body(pool):
        jobs = {
            name: app.enqueue(name)
            for name in ("too_slow", "too_slow_sync", "unstorable", "boom", "garbled")
        }
        ok = app.enqueue("add", {"a": 1, "b": 1})
        # a type this app has no task for (enqueued by some other producer)
        jobs["unknown"] = app.store.enqueue(new_job("ghost", None, max_attempts=1)).job
        await async_wait_until(
            lambda: all(
                status_of(app, j.id) == "failed" for name, j in jobs.items() if name != "boom"
            ),
            timeout=10,
        )
        await async_wait_until(lambda: status_of(app, ok.id) == "done", timeout=5)
        got = {name: app.get_job(j.id) for name, j in jobs.items()}
        assert got["too_slow"].last_error.startswith("TimeoutError: job exceeded its timeout")
        assert got["too_slow_sync"].last_error.startswith("TimeoutError")
        assert got["unstorable"].last_error.startswith("ResultError: result is not JSON")
        assert got["unstorable"].attempts == 1, "an unstorable result is not retried"
        assert got["unknown"].last_error.startswith("UnknownTask")
        # an error text no store could hold is made storable, not retried forever
        assert got["garbled"].last_error.startswith("ValueError: nul\\x00 and a lone surrogate ?")
        boom = got["boom"]
        assert boom.status == JobStatus.PENDING and boom.attempts == 1
        assert boom.last_error.startswith("ValueError: no good\nTraceback")
        assert boom.run_at > boom.updated_at  # retry scheduled with backoff

    metrics = asyncio.run(serve(app, body))
    assert metrics.failed == 5 and metrics.retried == 1 and metrics.processed == 1


def test_cancelling_a_running_job_stops_it_at_the_next_heartbeat(app):
    async def body(pool):
        job = app.enqueue("forever")
        await async_wait_until(lambda: status_of(app, job.id) == "processing")
        app.store.cancel(job.id)
        await async_wait_until(lambda: pool.busy == 0, timeout=5, message="slot freed")
        assert status_of(app, job.id) == "cancelled"
        after = app.enqueue("add", {"a": 1, "b": 2})
        await async_wait_until(lambda: status_of(app, after.id) == "done", timeout=5)

    asyncio.run(serve(app, body, lease=0.6))


def test_fetcher_never_claims_more_than_its_free_slots(app):
    async def body(pool):
        app.enqueue_many([{"type": "forever", "payload": {"seconds": 0.3}} for _ in range(12)])
        peak = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = app.store.stats().get("default", {})
            peak = max(peak, stats.get("processing", 0))
            if stats.get("done", 0) == 12:
                break
            await asyncio.sleep(0.02)
        assert stats.get("done") == 12
        assert peak <= 2

    asyncio.run(serve(app, body, concurrency=2, fetch_limit=10))


def test_shutdown_hands_back_running_jobs_without_using_an_attempt(app):
    async def body(pool):
        job = app.enqueue("forever")
        await async_wait_until(lambda: status_of(app, job.id) == "processing")
        body.job = job

    metrics = asyncio.run(serve(app, body, shutdown_timeout=0.2))
    back = app.get_job(body.job.id)
    assert back.status == JobStatus.PENDING and back.attempts == 0
    assert metrics.handed_back == 1


def test_json_log_lines_carry_the_job_fields(app, caplog):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logging.getLogger("conveyor.worker").addHandler(handler)
    logging.getLogger("conveyor.worker").setLevel(logging.INFO)
    try:

        async def body(pool):
            job = app.enqueue("add", {"a": 1, "b": 2}, priority=3)
            await async_wait_until(lambda: status_of(app, job.id) == "done")

        asyncio.run(serve(app, body))
    finally:
        logging.getLogger("conveyor.worker").removeHandler(handler)
    lines = [json.loads(JsonFormatter().format(r)) for r in records if hasattr(r, "conveyor")]
    processing = next(x for x in lines if x["msg"] == "processing")
    finished = next(x for x in lines if x["msg"] == "finished")
    assert processing["worker"].startswith("WORKER-") and processing["priority"] == 3
    assert processing["attempt"] == 1 and processing["type"] == "add"
    assert finished["status"] == "done" and isinstance(finished["duration"], float)
    assert {"ts", "level", "job"} <= set(finished)

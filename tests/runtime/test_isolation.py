"""The child-process pool of isolated tasks (conveyor/worker/isolation.py) in-process: what
comes back from a child (values, errors, Snooze/Retry, progress), kills at a timeout or a
cancel, replacement of worn-out children, and a full WorkerPool over both stores.

Real `conveyor worker` processes: tests/process/test_isolation.py."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import Future
from datetime import timedelta

import pytest

from conveyor import Conveyor
from conveyor.context import JobContext, Retry, Snooze, bind
from conveyor.errors import InvalidJob
from conveyor.jobs import JobStatus
from conveyor.stores import open_store
from conveyor.worker import PoolConfig, WorkerPool
from conveyor.worker.isolation import ChildFailed, ChildPool, IsolationConfig
from tests.support import isolated_app
from tests.support.factories import add, claim_one
from tests.support.wait import async_wait_until

SPEC = "tests.support.isolated_app:app"


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def call(pool: ChildPool, name: str, *args: object, timeout: float | None = None, **kw):
    return await pool.call(
        isolated_app.app.tasks[name], None, args, kw, timeout=timeout, on_cancel=lambda f: None
    )  # type: ignore[arg-type]


def with_pool(body, **config: object) -> None:
    async def main() -> None:
        pool = ChildPool(isolated_app.app, IsolationConfig(app_spec=SPEC, **config), 2)
        try:
            await body(pool)
        finally:
            pool.close()
        assert pool.pids() == []

    asyncio.run(main())


def test_values_errors_and_control_flow_come_back_from_the_child():
    async def body(pool: ChildPool) -> None:
        assert await call(pool, "echo", {"a": [1, 2.5, None]}) == {"a": [1, 2.5, None]}
        assert await call(pool, "record", 1) != os.getpid()
        # a set is picklable: the executor's encode_result refuses it, as for a thread task
        assert await call(pool, "unserialisable") == {1, 2, 3}

        with pytest.raises(ChildFailed) as failed:
            await call(pool, "boom", "no good")
        assert failed.value.error.startswith("ValueError: no good\nTraceback")
        assert "isolated_app.py" in failed.value.error, "the child's own traceback"
        assert failed.value.retryable

        with pytest.raises(ChildFailed) as failed:
            await call(pool, "boom_unpicklable")
        assert failed.value.error.startswith("Unreachable: defined inside the task")

        with pytest.raises(ChildFailed) as failed:
            await call(pool, "unpicklable")
        assert failed.value.error == (
            "ResultError: result is not JSON-serialisable: "
            "Object of type function is not JSON serializable"
        )
        assert not failed.value.retryable

        with pytest.raises(ChildFailed) as failed:
            await call(pool, "exits")
        assert failed.value.error.startswith("SystemExit: 3")

        with pytest.raises(Snooze) as snoozed:
            await call(pool, "snooze")
        assert snoozed.value.seconds == 30
        with pytest.raises(Retry) as retried:
            await call(pool, "retry_later")
        assert retried.value.in_ == 120 and str(retried.value) == "partner busy"

    with_pool(body)


@pytest.mark.parametrize(
    ("task", "error"),
    [
        ("exit13", "ChildDied: the task's process exited with code 13"),
        ("segfault", "ChildDied: the task's process was killed by signal 11 (SIGSEGV)"),
    ],
)
def test_a_child_that_dies_fails_its_call_and_the_next_gets_a_fresh_child(task, error):
    async def body(pool: ChildPool) -> None:
        with pytest.raises(ChildFailed) as failed:
            await call(pool, task, 1)
        assert failed.value.error == error and failed.value.retryable
        assert await call(pool, "echo", 7) == 7

    with_pool(body)


def test_a_timeout_kills_the_child_and_frees_its_slot():
    async def body(pool: ChildPool) -> None:
        warm = await call(pool, "record", 0)  # the first child also starts the fork server
        begin = time.monotonic()
        with pytest.raises(TimeoutError):
            await call(pool, "hang", 1, timeout=0.5)
        assert 0.5 <= time.monotonic() - begin < 1.5
        # the hung child (the idle one, reused) is dead and reaped by the time it returns
        assert gone(warm)
        assert await call(pool, "echo", 2) == 2

    with_pool(body)


def test_the_timeout_holds_when_an_idle_child_takes_the_job_at_once():
    # the thread may hand the job to a warm child before the loop has armed the timeout:
    # the timeout must be armed all the same, never left to run forever
    async def body(pool: ChildPool) -> None:
        for seq in range(20):
            await call(pool, "echo", seq)  # an idle child is ready for the next call
            begin = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call(pool, "hang", seq, timeout=0.2), 10)
            assert time.monotonic() - begin < 5, "the call's own timeout, not the test's"

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the thread run as soon as it is started
    try:
        with_pool(body)
    finally:
        sys.setswitchinterval(interval)


def test_cancelling_a_call_kills_the_child_and_reports_when_it_is_dead():
    async def body(pool: ChildPool) -> None:
        stopped: list[Future[object]] = []
        warm = await call(pool, "record", 0)
        running = asyncio.ensure_future(
            pool.call(
                isolated_app.app.tasks["span"],
                None,  # type: ignore[arg-type]
                (1, 30),
                {},
                timeout=None,
                on_cancel=stopped.append,
            )
        )
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        [future] = stopped
        await asyncio.wait_for(asyncio.wrap_future(future), 3)
        assert gone(warm)

    with_pool(body)


def test_max_tasks_per_child_replaces_children():
    async def body(pool: ChildPool) -> None:
        pids = [await call(pool, "record", n) for n in range(6)]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5], pids

    with_pool(body, max_tasks_per_child=2)


def test_max_memory_per_child_replaces_a_child_that_grew_past_it():
    async def body(pool: ChildPool) -> None:
        rss = [await call(pool, "leak", n, 40) for n in range(6)]
        over = [i for i, r in enumerate(rss) if r > 150 * 1024 * 1024]
        assert over, rss
        for i in over:
            if i + 1 < len(rss):
                assert rss[i + 1] < rss[i], f"job {i + 1} ran in a fresh child: {rss}"

    with_pool(body, max_memory_per_child=150)


def test_progress_reaches_the_jobs_context_in_the_worker(sqlite_url):
    store = open_store(sqlite_url)
    store.migrate()
    add(store, "progress")
    job = claim_one(store)
    store.close()
    reported: list[tuple[float, str | None] | None] = []

    async def body(pool: ChildPool) -> None:
        bind(JobContext(job, lambda ctx: reported.append(ctx.take_progress())))
        value = await pool.call(
            isolated_app.app.tasks["progress"], job, (), {}, timeout=None, on_cancel=print
        )
        assert value == {"id": job.id, "attempt": 1, "cancelled": False}
        assert reported == [(0.5, "half way")]

    with_pool(body)


def test_isolated_is_for_sync_tasks():
    app = Conveyor("sqlite:///:memory:")
    with pytest.raises(InvalidJob, match="isolated=True is for sync functions"):

        @app.task(isolated=True)
        async def nope() -> None: ...

    assert app.task(isolated=True)(lambda: None).options.isolated


# -- the whole pool, both stores ---------------------------------------------------------------


@pytest.fixture
def app(store_url):
    isolated_app.app.configure(database_url=store_url)
    yield isolated_app.app
    isolated_app.app.close()


def test_a_worker_pool_runs_isolated_tasks_and_records_their_outcomes(app):
    async def body(pool: WorkerPool) -> None:
        ok = app.enqueue("echo", {"value": [1, "two"]})
        unstorable = app.enqueue("unpicklable", max_attempts=3)
        died = app.enqueue("exit13", {"seq": 1}, max_attempts=2)
        snoozed = app.enqueue("snooze")
        enqueued = app.enqueue("enqueue_other", {"seq": 5})

        def status(job_id: int) -> JobStatus:
            return app.get_job(job_id).status

        await async_wait_until(lambda: status(ok.id) == "done", timeout=15)
        assert app.get_job(ok.id).result == [1, "two"]
        await async_wait_until(lambda: status(unstorable.id) == "failed", timeout=15)
        assert app.get_job(unstorable.id).attempts == 1, "not retried: same value again"
        await async_wait_until(lambda: app.get_job(died.id).last_error, timeout=15)
        retried = app.get_job(died.id)
        assert retried.status == "pending" and retried.attempts == 1, "retried as usual"
        assert retried.last_error == "ChildDied: the task's process exited with code 13"
        later = ok.created_at + timedelta(seconds=20)
        await async_wait_until(lambda: app.get_job(snoozed.id).run_at > later, timeout=15)
        assert app.get_job(snoozed.id).status == "pending"
        await async_wait_until(lambda: status(enqueued.id) == "done", timeout=15)
        other = app.get_job(app.get_job(enqueued.id).result)
        assert other.type == "plain", "the child enqueued into the worker's store"

    async def main() -> None:
        pool = WorkerPool(
            app,
            PoolConfig(concurrency=3, fetch_interval=60, isolation=IsolationConfig(app_spec=SPEC)),
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        try:
            await body(pool)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 30)

    asyncio.run(main())


def test_a_worker_pool_without_an_app_spec_finds_the_task_by_its_module(app):
    async def main() -> None:
        pool = WorkerPool(app, PoolConfig(concurrency=1, fetch_interval=60))
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        try:
            job = app.enqueue("record", {"seq": 1})
            await async_wait_until(lambda: app.get_job(job.id).status == "done", timeout=15)
            assert app.get_job(job.id).result != os.getpid()
        finally:
            stop.set()
            await asyncio.wait_for(runner, 30)

    asyncio.run(main())


def test_the_worker_settings_reach_the_pool_config(monkeypatch):
    from conveyor.process import pool_config
    from conveyor.settings import Settings

    assert pool_config(Settings(app="m:a")).isolation == IsolationConfig(app_spec="m:a")
    monkeypatch.setenv("WORKER_POOL", "Process")
    monkeypatch.setenv("MAX_TASKS_PER_CHILD", "3")
    monkeypatch.setenv("MAX_MEMORY_PER_CHILD", "200")
    assert pool_config(Settings(app="m:a")).isolation == IsolationConfig(
        every_sync_task=True, max_tasks_per_child=3, max_memory_per_child=200, app_spec="m:a"
    )
    # flags win over the environment; 0 means no limit
    given = Settings(app="m:a", pool="thread", max_tasks_per_child=0, max_memory_per_child=0)
    assert pool_config(given).isolation == IsolationConfig(app_spec="m:a")

"""The periodic-job scheduler (worker/scheduler.py) on both stores, its clock played by the
test: which ticks it offers at its first look and later ones, that several schedulers on one
store enqueue each tick once, that a failed store call is made good, and that a worker pool
runs it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor, current_job
from conveyor.errors import InvalidJob, StoreUnavailable
from conveyor.jobs import JobFilter, JobStatus
from conveyor.periodic import unique_key
from conveyor.worker import PoolConfig, WorkerPool
from conveyor.worker.scheduler import CATCH_UP, WAKE_AFTER_S, Scheduler
from conveyor.worker.storecalls import StoreCalls
from tests.support.wait import async_wait_until


def t(hour: int, minute: int, second: float = 0) -> datetime:
    return datetime(2030, 1, 1, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def minutely(url: str) -> Conveyor:
    app = Conveyor(url)
    app.periodic("* * * * *", task="beat", name="minutely")
    return app


def scheduler(app: Conveyor, clock: Clock, calls: StoreCalls, woken: list[int]) -> Scheduler:
    return Scheduler(
        app,
        app.store,
        calls,
        stopping=asyncio.Event(),
        on_enqueued=lambda: woken.append(1),
        clock=clock,
    )


def ticks_enqueued(app: Conveyor) -> list[str]:
    return sorted(j.unique_key or "" for j in app.list_jobs(limit=1000))


def keys(*moments: datetime) -> list[str]:
    return sorted(unique_key("minutely", m) for m in moments)


@pytest.fixture
def app(store_url):
    app = minutely(store_url)
    yield app
    app.close()


def test_first_look_offers_the_latest_due_tick_later_looks_every_tick_since(app):
    calls, woken, clock = StoreCalls(), [], Clock(t(9, 0, 30))

    async def body() -> None:
        first = scheduler(app, clock, calls, woken)
        assert await first.register()
        # registered at 09:00:30: the 09:00 tick is before the schedule counts
        assert await first.run_once(clock()) == t(9, 1, WAKE_AFTER_S)
        assert ticks_enqueued(app) == []
        clock.now = t(9, 1, 0.05)
        await first.run_once(clock())
        assert ticks_enqueued(app) == keys(t(9, 1))
        # a look that comes late (a busy loop, a slow store) catches up what it missed
        clock.now = t(9, 3, 10)
        await first.run_once(clock())
        assert ticks_enqueued(app) == keys(t(9, 1), t(9, 2), t(9, 3))
        # the fleet stops; a process starting at 09:10:30 offers only the latest missed tick
        clock.now = t(9, 10, 30)
        second = scheduler(app, clock, calls, woken)
        assert await second.register()
        await second.run_once(clock())
        await second.run_once(clock())  # again: nothing new
        assert ticks_enqueued(app) == keys(t(9, 1), t(9, 2), t(9, 3), t(9, 10))
        # a running scheduler that could not look for 20 minutes catches up at most CATCH_UP
        clock.now = t(9, 30, 5)
        await second.run_once(clock())
        recent = [t(9, 30 - n) for n in range(CATCH_UP)]
        assert ticks_enqueued(app) == keys(t(9, 1), t(9, 2), t(9, 3), t(9, 10), *recent)

    asyncio.run(body())
    calls.shutdown()
    assert len(woken) == 4 + CATCH_UP, "local workers are woken for each enqueued job"
    (row,) = app.list_periodic()
    assert row.state is not None and row.state.last_tick == t(9, 30)


def test_several_schedulers_enqueue_each_tick_once(app, store_url):
    others = [minutely(store_url) for _ in range(2)]
    calls, woken = StoreCalls(), []
    # three processes whose clocks differ by up to 1.5 s, looking at every tick
    clocks = [Clock(t(8, 0)) for _ in range(3)]
    skews = [0.0, 0.7, -0.8]

    async def body() -> None:
        schedulers = [
            scheduler(a, c, calls, woken) for a, c in zip([app, *others], clocks, strict=True)
        ]
        for s in schedulers:
            assert await s.register()
        for minute in range(1, 12):
            for s, c, skew in zip(schedulers, clocks, skews, strict=True):
                c.now = t(8, minute, WAKE_AFTER_S + skew)
                await s.run_once(c())

    asyncio.run(body())
    calls.shutdown()
    for other in others:
        other.close()
    expected = keys(*(t(8, minute) for minute in range(1, 12)))
    # the last minute is late for the clock 0.8 s behind: taken by the others already
    assert ticks_enqueued(app) == expected


def test_a_failed_store_call_is_tried_again_soon_and_its_tick_enqueued(app):
    calls, woken, clock = StoreCalls(), [], Clock(t(7, 0, 30))
    store = app.store
    real = store.enqueue_periodic
    failures = [StoreUnavailable("store down for the test")]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    store.enqueue_periodic = flaky  # type: ignore[method-assign]

    async def body() -> None:
        s = scheduler(app, clock, calls, woken)
        assert await s.register()
        clock.now = t(7, 1, 0.05)
        assert await s.run_once(clock()) == t(7, 1, 1.05), "tried again in a second"
        assert ticks_enqueued(app) == []
        clock.now = t(7, 1, 1.05)
        assert await s.run_once(clock()) == t(7, 2, WAKE_AFTER_S)
        assert ticks_enqueued(app) == keys(t(7, 1))

    asyncio.run(body())
    calls.shutdown()


def test_a_worker_pool_enqueues_and_runs_every_tick(store_url):
    app = Conveyor(store_url)
    ran: list[str] = []

    @app.periodic("* * * * * *")
    def beat() -> None:
        ran.append(current_job().job.unique_key or "")

    async def body() -> None:
        pool = WorkerPool(app, PoolConfig(concurrency=2, fetch_interval=60))
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        await async_wait_until(lambda: len(ran) >= 3, timeout=10, message="three ticks ran")
        stop.set()
        await asyncio.wait_for(runner, 30)

    asyncio.run(body())
    try:
        jobs = app.list_jobs(limit=1000)
        assert all(j.status == JobStatus.DONE for j in jobs if j.unique_key in ran)
        # periodic:beat:<tick>
        ticks = sorted(datetime.fromisoformat(key.split(":", 2)[2]) for key in ran)
        assert len(set(ran)) == len(ran), "each tick ran once"
        assert [b - a for a, b in zip(ticks, ticks[1:])] == [timedelta(seconds=1)] * (
            len(ticks) - 1
        ), "consecutive seconds"
        (row,) = app.list_periodic()
        assert row.active and row.state is not None and row.state.last_job_id is not None
    finally:
        app.close()


def test_a_periodic_job_that_does_not_fit_its_task_fails_the_pools_start(store_url):
    app = Conveyor(store_url)
    app.periodic("* * * * *", task="export", payload={"report": 7})

    @app.task
    def export(report_id: int) -> None: ...

    try:
        with pytest.raises(InvalidJob, match="periodic job 'export'"):
            WorkerPool(app, PoolConfig())
        assert app.store.list_periodic() == []
    finally:
        app.close()


def test_an_app_without_periodic_jobs_writes_no_schedule(store_url):
    app = Conveyor(store_url)

    @app.task
    def noop() -> None: ...

    async def body() -> None:
        pool = WorkerPool(app, PoolConfig(concurrency=1, fetch_interval=60))
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(runner, 30)

    asyncio.run(body())
    try:
        assert app.store.list_periodic() == []
        assert app.list_jobs(limit=10) == []
        assert app.store.list_jobs(JobFilter()) == []
    finally:
        app.close()

"""SPEC §8 `app.wait` / `app.wait_async` on both stores, the jobs finished through the store
as a worker finishes them (with real worker processes: tests/process/test_wait.py): the
answer comes at once for a finished job and as soon as a job finishes, TimeoutError on
time, JobNotFound and InvalidJob like the other facade methods, from threads and event
loops; and what wakes the waiters: PostgreSQL's NOTIFY conveyor_finished (its payloads, a
lost notification, a dropped LISTEN connection) and SQLite's PRAGMA data_version."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest
import uvloop

from conveyor import Conveyor, waiting
from conveyor.app import ASYNC_THREADS
from conveyor.errors import InvalidJob, JobNotFound, StoreUnavailable
from conveyor.jobs import Finish, Job, JobStatus
from conveyor.stores.sqlite.store import path_from_url
from tests.support import redis as redis_support
from tests.support.factories import LEASE
from tests.support.wait import async_wait_until, wait_until

LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}
# SPEC §8 "as soon as the job is finished": the wait returns this soon after finished_at
LATENCY_S = 0.1


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    app = Conveyor(store_url)
    yield app
    app.close()


@pytest.fixture
def notifications_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No once-a-second re-read of the waited-for jobs: only what the listener hears can
    answer a wait (so a test proves that it heard)."""
    monkeypatch.setattr(waiting, "RECHECK_S", 60.0)


def is_postgres(app: Conveyor) -> bool:
    return app.database_url.startswith("postgres")


def registered(app: Conveyor, job_id: int) -> bool:
    watch = app._finish_watch
    return watch is not None and job_id in watch.waiting_for()


def finish(app: Conveyor, job: Job, outcome: str) -> None:
    """done / failed through a claim and the worker's finish statement; cancelled by the
    operator's cancel."""
    if outcome == "cancelled":
        app.cancel(job.id)
        return
    (claimed,) = app.store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert claimed.id == job.id
    ref = claimed.lease_ref()
    kind = Finish.done(ref, '"ok"') if outcome == "done" else Finish.failed(ref, "boom")
    assert app.store.finish_many([kind]) == {job.id: JobStatus(outcome)}


def finish_all(app: Conveyor, jobs: list[Job]) -> None:
    for job in jobs:
        finish(app, job, "done")


def finish_silently(app: Conveyor, job_id: int) -> None:
    """Mark the job done with plain SQL, outside Conveyor's statements: no notification."""
    if app.database_url.startswith("redis"):
        redis_support.finish_silently(app.database_url, job_id)
        return
    if is_postgres(app):
        with psycopg.connect(app.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE jobs SET status = 'done', finished_at = now(), updated_at = now()"
                " WHERE id = %s",
                (job_id,),
            )
        return
    now_us = int(time.time() * 1_000_000)
    db = sqlite3.connect(path_from_url(app.database_url))
    try:
        with db:
            db.execute(
                "UPDATE jobs SET status = 'done', finished_at = ?, updated_at = ? WHERE id = ?",
                (now_us, now_us, job_id),
            )
    finally:
        db.close()


def pg_notify(app: Conveyor, payload: str) -> None:
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify('conveyor_finished', %s)", (payload,))


def listener_pids(app: Conveyor) -> list[int]:
    """The backends of this database's waiters' LISTEN connections."""
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'conveyor-waiter'"
        ).fetchall()
    return [row[0] for row in rows]


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "conveyor-finish-watch"]


class Waiting:
    """`app.wait(job_id, timeout)` on a thread of its own: its answer (or error) and when."""

    def __init__(self, app: Conveyor, job_id: int, timeout: float) -> None:
        self.job: Job | None = None
        self.error: BaseException | None = None
        self.returned = 0.0
        self._thread = threading.Thread(target=self._run, args=(app, job_id, timeout))
        self._thread.start()
        wait_until(lambda: registered(app, job_id) or not self._thread.is_alive())

    def _run(self, app: Conveyor, job_id: int, timeout: float) -> None:
        try:
            self.job = app.wait(job_id, timeout)
        except BaseException as exc:
            self.error = exc
        self.returned = time.time()

    def returns_within(self, seconds: float, *, expected: bool) -> None:
        self._thread.join(seconds)
        assert self._thread.is_alive() != expected, (self.job, self.error)

    def result(self, timeout: float = 15) -> Job:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the wait did not return"
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self.job


# -- answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["done", "failed", "cancelled"])
def test_a_finished_job_is_returned_at_once(app, outcome):
    job = app.enqueue("t")
    finish(app, job, outcome)
    for timeout in (0, 5):
        began = time.monotonic()
        found = app.wait(job.id, timeout)
        assert time.monotonic() - began < 0.5
        assert found.id == job.id and found.status == outcome
        assert found == app.get_job(job.id)
    assert app.wait(job.id, 5).result == ("ok" if outcome == "done" else None)


@pytest.mark.parametrize("outcome", ["done", "failed", "cancelled"])
def test_wait_returns_as_soon_as_the_store_says_the_job_finished(app, outcome, notifications_only):
    """Woken by the finishing statement's own notification (PostgreSQL) or the file's
    data_version (SQLite), with no re-read: within LATENCY_S of finished_at."""
    job = app.enqueue("t")
    waiter = Waiting(app, job.id, 10)
    finish(app, job, outcome)
    found = waiter.result()
    assert found.status == outcome
    assert found.finished_at is not None
    lag = waiter.returned - found.finished_at.timestamp()
    assert lag < LATENCY_S, f"returned {lag * 1000:.0f} ms after finished_at"


def test_timeout_raises_timeout_error_on_time(app):
    job = app.enqueue("t", queue="nobody")
    for timeout in (0.5, 1):
        began = time.monotonic()
        message = f"job {job.id} did not finish within {timeout:g} s"
        with pytest.raises(TimeoutError, match=message):
            app.wait(job.id, timeout)
        assert timeout <= time.monotonic() - began < timeout + 0.5
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        app.wait(job.id, 0)
    assert time.monotonic() - began < 0.5
    assert app.get_job(job.id).status == JobStatus.PENDING
    assert app._finish_watch is not None and app._finish_watch.waiting_for() == set()


def test_absent_jobs_and_bad_timeouts_are_refused_like_other_facade_calls(app):
    job = app.enqueue("t")
    for absent in (job.id + 1000, 0, -1, 2**70):
        with pytest.raises(JobNotFound, match=f"job {absent} not found"):
            app.wait(absent, 5)
        with pytest.raises(JobNotFound, match=f"job {absent} not found"):
            asyncio.run(app.wait_async(absent, 5))
    for bad in (-1, -0.001, float("nan"), float("inf"), 10**400, "1", None, True):
        with pytest.raises(InvalidJob, match="timeout must be a"):
            app.wait(job.id, bad)
        with pytest.raises(InvalidJob, match="timeout must be a"):
            asyncio.run(app.wait_async(job.id, bad))
    with pytest.raises(InvalidJob, match="a job id is an integer"):
        app.wait("1", 5)
    assert app.get_job(job.id).status == JobStatus.PENDING


def test_closing_the_app_ends_its_waits_and_a_later_wait_works(app):
    job = app.enqueue("t")
    waiter = Waiting(app, job.id, 30)
    began = time.monotonic()
    app.close()
    with pytest.raises(StoreUnavailable, match=f"closed while waiting for job {job.id}"):
        waiter.result()
    assert time.monotonic() - began < 3
    assert watch_threads() == []
    finish(app, job, "done")  # the store reopens
    assert app.wait(job.id, 5).status == JobStatus.DONE


# -- async ---------------------------------------------------------------------------------
@pytest.mark.parametrize("loop", LOOPS)
def test_wait_async_holds_no_thread_and_leaves_the_loop_running(app, loop):
    """More waits than the app has async threads, a ticker on the loop: while they wait,
    an enqueue_async still gets a thread at once, and the ticker stays on time."""
    jobs = [app.enqueue("t", n) for n in range(ASYNC_THREADS * 2)]

    async def main() -> tuple[list[Job], list[float]]:
        running = asyncio.get_running_loop()
        late: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = running.time()
                await asyncio.sleep(0.01)
                late.append(running.time() - before - 0.01)

        ticking = asyncio.create_task(ticker())
        waits = [asyncio.create_task(app.wait_async(job.id, 20)) for job in jobs]
        await async_wait_until(lambda: all(registered(app, job.id) for job in jobs))
        began = running.time()
        extra = await app.enqueue_async("t", "extra", queue="other")
        assert running.time() - began < 0.5, "an async thread was free at once"
        assert extra.status == JobStatus.PENDING
        # the loop goes on: 20 ticks while every wait is pending
        await async_wait_until(lambda: len(late) >= 20)
        assert not any(w.done() for w in waits)
        await asyncio.to_thread(finish_all, app, jobs)
        found = await asyncio.gather(*waits)
        stop.set()
        await ticking
        return found, late

    found, late = LOOPS[loop](main())
    assert [job.id for job in found] == [job.id for job in jobs]
    assert {job.status for job in found} == {JobStatus.DONE}
    # a wait that blocked the loop would hold a tick for as long as the wait (seconds); a
    # loaded machine makes some tick tens of ms late on its own
    assert max(late) < 0.25, late


def test_wait_async_times_out_and_forgets_its_waiter(app):
    job = app.enqueue("t", queue="nobody")

    async def main() -> float:
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=f"job {job.id} did not finish within 0.5 s"):
            await app.wait_async(job.id, 0.5)
        return time.monotonic() - began

    assert 0.5 <= asyncio.run(main()) < 1.0
    assert app._finish_watch is not None and app._finish_watch.waiting_for() == set()


# -- what wakes the waiters -------------------------------------------------------------------
def test_one_watch_thread_and_one_read_per_wake_up_for_many_waiters(app, notifications_only):
    jobs = [app.enqueue("t", n) for n in range(50)]
    reads: list[int] = []
    read = app.store.finished_among

    def counted(job_ids):
        reads.append(len(job_ids))
        return read(job_ids)

    app.store.finished_among = counted
    waiters = [Waiting(app, job.id, 20) for job in jobs]
    assert len(watch_threads()) == 1
    if is_postgres(app):
        wait_until(lambda: len(listener_pids(app)) == 1, message="one LISTEN connection")
    claimed = app.store.claim(worker="w", queues=None, limit=50, lease=LEASE)
    app.store.finish_many([Finish.done(job.lease_ref(), "1") for job in claimed])
    assert {waiter.result().status for waiter in waiters} == {JobStatus.DONE}
    # one statement finished all 50: one read per wake-up (the claim's write may wake the
    # watch too, and a read may overlap a write), each for every job still waited for, not 50
    assert 1 <= len(reads) <= 3, reads
    assert all(n <= 50 for n in reads), reads


def test_a_finish_nobody_announced_is_seen_within_about_a_second(app):
    """The once-a-second re-read: a finish without a notification (on SQLite every commit
    is seen, so this is PostgreSQL's lost-notification case)."""
    job = app.enqueue("t")
    waiter = Waiting(app, job.id, 10)
    finish_silently(app, job.id)
    done_at = time.time()
    assert waiter.result().status == JobStatus.DONE
    assert waiter.returned - done_at < 1.5


def test_sqlite_any_commit_of_another_connection_wakes_the_waiters(app, notifications_only):
    if not app.database_url.startswith("sqlite"):
        pytest.skip("SQLite's data_version: the server stores publish what finished (below)")
    job = app.enqueue("t")
    waiter = Waiting(app, job.id, 10)
    finish_silently(app, job.id)
    done_at = time.time()
    assert waiter.result().status == JobStatus.DONE
    assert waiter.returned - done_at < LATENCY_S


def test_postgres_notification_payloads(app, notifications_only):
    """Ids, comma-separated: only waiters of those ids are read; anything else (no payload,
    garbage) re-reads every waiter."""
    if not is_postgres(app):
        pytest.skip("PostgreSQL's NOTIFY conveyor_finished")
    for payload in ("{id}", " 1 ,{id},7", "", "garbage", "{id}x", "9" * 30):
        job = app.enqueue("t")
        reads: list[list[int]] = []
        read = app.store.finished_among

        def counted(job_ids, read=read, reads=reads):
            reads.append(sorted(job_ids))
            return read(job_ids)

        app.store.finished_among = counted
        waiter = Waiting(app, job.id, 10)
        finish_silently(app, job.id)
        pg_notify(app, str(job.id + 1000))  # another job's finish: no read of this one
        waiter.returns_within(0.3, expected=False)
        assert reads == [], f"read on another job's notification ({payload!r})"
        sent = time.time()
        pg_notify(app, payload.format(id=job.id))
        assert waiter.result().status == JobStatus.DONE, payload
        assert waiter.returned - sent < LATENCY_S, payload
        assert reads == [[job.id]], reads
        del app.store.finished_among


def test_postgres_listener_reconnects_after_its_connection_is_killed(app, notifications_only):
    if not is_postgres(app):
        pytest.skip("PostgreSQL's LISTEN connection")
    first = app.enqueue("t")
    finish(app, first, "done")
    assert app.wait(first.id, 5).status == JobStatus.DONE  # a finished job: the watch starts
    job = app.enqueue("t")
    waiter = Waiting(app, job.id, 20)
    wait_until(lambda: len(listener_pids(app)) == 1, message="one LISTEN connection")
    (old,) = listener_pids(app)
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (old,))
    wait_until(lambda: listener_pids(app) not in ([], [old]), timeout=10, message="reconnected")
    (new,) = listener_pids(app)
    assert new != old
    finish_silently(app, job.id)
    sent = time.time()
    pg_notify(app, str(job.id))
    assert waiter.result().status == JobStatus.DONE
    assert waiter.returned - sent < LATENCY_S

"""SPEC §8 `app.wait` / `app.wait_async` with real `conveyor worker` processes finishing the
jobs, on both stores: the answer comes within 100 ms of the job's finished_at (done, failed,
cancelled while running), TimeoutError on time, from threads and from an event loop that
keeps running, and many waiters share one listener."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.app import ASYNC_THREADS
from conveyor.jobs import Job, JobStatus
from tests.support.wait import async_wait_until, wait_until

pytestmark = [pytest.mark.process]

# a short lease, so that a cancelled run is stopped within about a second
WORKER = ["--workers", "4", "--lease", "3", "--fetch-interval", "0.5"]
# SPEC §8 "as soon as the job is finished": a wait returns this soon after finished_at
LATENCY_S = 0.1
RUN_S = 0.5  # the task's sleep: the wait really waits


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    app = Conveyor(store_url)  # a producer: the tasks are the workers' (tests/support/apps.py)
    yield app
    app.close()


def lag(job: Job, returned: float) -> float:
    assert job.finished_at is not None
    return returned - job.finished_at.timestamp()


def registered(app: Conveyor, job_id: int) -> bool:
    watch = app._finish_watch
    return watch is not None and job_id in watch.waiting_for()


def test_wait_returns_within_100_ms_of_a_run_finishing(app, workers):
    workers.start(*WORKER)
    lags = {}
    for seq, (task, payload, status) in enumerate(
        [
            ("slow", {"seq": 0, "seconds": RUN_S}, JobStatus.DONE),
            ("aslow", {"seq": 1, "seconds": RUN_S}, JobStatus.DONE),
            ("flaky", {"seq": 2, "failures": 5}, JobStatus.FAILED),  # its only attempt fails
        ]
    ):
        job = app.enqueue(task, payload, max_attempts=1)
        began = time.monotonic()
        finished = app.wait(job.id, timeout=30)
        returned = time.time()
        assert finished.id == job.id and finished.status == status, finished
        if status == JobStatus.DONE:
            assert finished.result == seq
            assert time.monotonic() - began >= RUN_S, "the wait waited for the run"
        else:
            assert "planned failure" in (finished.last_error or "")
        lags[task] = lag(finished, returned)
    assert max(lags.values()) < LATENCY_S, lags
    print("wait latency after finished_at:", {k: f"{v * 1000:.1f} ms" for k, v in lags.items()})


def test_wait_returns_a_job_cancelled_while_it_runs(app, workers):
    workers.start(*WORKER)
    job = app.enqueue("until_cancelled", {"seq": 1, "seconds": 30})
    answers: list[tuple[Job, float]] = []

    def wait() -> None:
        answers.append((app.wait(job.id, timeout=30), time.time()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: workers.records.started(), timeout=15, message="the run started")
    assert waiter.is_alive()
    app.cancel(job.id)
    waiter.join(10)
    assert not waiter.is_alive()
    ((cancelled, returned),) = answers
    assert cancelled.status == JobStatus.CANCELLED
    assert lag(cancelled, returned) < LATENCY_S
    # the worker stops the run (and records its end) within about a second
    wait_until(lambda: workers.records.finished(), timeout=10, message="the run stopped")


def test_wait_times_out_on_time_while_workers_run_other_jobs(app, workers):
    workers.start(*WORKER, "--queues", "default")
    parked = app.enqueue("record", {"seq": 1}, queue="nobody")  # no worker takes it
    busy = [app.enqueue("record", {"seq": n}) for n in range(2, 12)]
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {parked.id} did not finish within 2 s"):
        app.wait(parked.id, timeout=2)
    assert 2 <= time.monotonic() - began < 2.5
    assert app.get_job(parked.id).status == JobStatus.PENDING
    assert {app.wait(job.id, 30).status for job in busy} == {JobStatus.DONE}


def test_50_waiting_threads_share_one_listener(app, workers, store_url):
    jobs = [app.enqueue("slow", {"seq": n, "seconds": 0.2}) for n in range(50)]
    answers: dict[int, Job] = {}
    returned: dict[int, float] = {}

    def wait(job_id: int) -> None:
        answers[job_id] = app.wait(job_id, timeout=60)
        returned[job_id] = time.time()

    threads = [threading.Thread(target=wait, args=(job.id,)) for job in jobs]
    for thread in threads:
        thread.start()
    wait_until(lambda: all(registered(app, job.id) for job in jobs), message="all waiting")
    watch_threads = [t for t in threading.enumerate() if t.name == "conveyor-finish-watch"]
    assert len(watch_threads) == 1
    if store_url.startswith("postgres"):
        with psycopg.connect(store_url, autocommit=True) as conn:
            listeners = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'conveyor-waiter'"
            ).fetchone()
        assert listeners == (1,)
    workers.start("--workers", "10", "--fetch-interval", "0.5")
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert {answers[job.id].status for job in jobs} == {JobStatus.DONE}
    lags = sorted(lag(answers[job.id], returned[job.id]) for job in jobs)
    assert lags[-1] < LATENCY_S, lags
    print(
        f"50 waiters: latency after finished_at median {lags[25] * 1000:.1f} ms,"
        f" max {lags[-1] * 1000:.1f} ms"
    )


def test_wait_async_from_a_running_event_loop(app, workers):
    """More waits than the app has async threads: the loop goes on ticking and the app's
    threads stay free (an enqueue_async gets one at once) while they wait."""
    jobs = [app.enqueue("aslow", {"seq": n, "seconds": RUN_S}) for n in range(ASYNC_THREADS * 2)]

    async def main() -> tuple[list[Job], list[float], float]:
        loop = asyncio.get_running_loop()
        late: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = loop.time()
                await asyncio.sleep(0.01)
                late.append(loop.time() - before - 0.01)

        ticking = asyncio.create_task(ticker())
        waits = [asyncio.create_task(app.wait_async(job.id, 30)) for job in jobs]
        await async_wait_until(lambda: all(registered(app, job.id) for job in jobs))
        began = loop.time()
        await app.enqueue_async("record", {"seq": 99})
        enqueue_s = loop.time() - began
        assert not any(w.done() for w in waits), "the worker is still starting"
        found = await asyncio.gather(*waits)
        stop.set()
        await ticking
        return found, late, enqueue_s

    workers.start(*WORKER)
    found, late, enqueue_s = asyncio.run(main())
    assert [job.id for job in found] == [job.id for job in jobs]
    assert {job.status for job in found} == {JobStatus.DONE}
    assert enqueue_s < 0.5, "an async thread was free while the waits went on"
    assert len(late) > 50, "the loop ran on while waiting"  # the worker's start alone is ~1 s
    assert max(late) < 0.1, max(late)  # a worker process starts meanwhile, on 2 CPUs

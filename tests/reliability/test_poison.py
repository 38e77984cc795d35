"""Poison jobs in real `conveyor worker` processes, on both stores: a job that kills its
process, hangs past its timeout, or returns what cannot be stored ends `failed` with a clear
error after a bounded number of attempts, and never wedges the worker that ran it.

(tests/runtime/test_pool.py covers timeouts and bad results in-process; these are the same
promises with real processes, real exits and real signals.)"""

from __future__ import annotations

import signal
import time

import pytest

from conveyor import Conveyor
from conveyor.jobs import Job
from tests.support.procs import Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

APP = ["--app", "tests.reliability.poison_app:app"]  # the last --app wins over procs.py's
FAST = ["--fetch-interval", "0.5"]
MIB = 1024 * 1024


@pytest.fixture
def producer(store_url):
    # A producer without tasks registered: it cannot know a task's max_attempts, so tests
    # pass the value the poison task declares.
    app = Conveyor(store_url)
    yield app
    app.close()


def finished(app: Conveyor, job_id: int, timeout: float = 30) -> Job:
    def check() -> Job | None:
        job = app.get_job(job_id)
        return job if job is not None and job.status in ("done", "failed") else None

    job = wait_until(check, timeout=timeout, message=f"job {job_id} finished")
    assert job is not None
    return job


def serves(app: Conveyor, seq: int = 999) -> None:
    """The worker still runs ordinary jobs."""
    job = app.enqueue("record", {"seq": seq})
    assert finished(app, job.id, timeout=15).status == "done"


def no_traceback(workers: Workers) -> None:
    for n in range(len(workers.procs)):
        assert "Traceback" not in workers.log(n), workers.log(n)


@pytest.mark.slow
def test_a_job_that_kills_its_worker_fails_after_max_attempts_and_a_new_worker_serves(
    workers, producer
):
    job = producer.enqueue("suicide", {"seq": 1}, max_attempts=3)
    args = ["--workers", "2", "--lease", "1", *APP, *FAST]
    proc = workers.start(*args)
    deaths = 0
    deadline = time.monotonic() + 60
    # A supervisor's loop: each time the poison job takes a worker down, start another.
    while (current := producer.get_job(job.id)) is not None and current.status != "failed":
        assert time.monotonic() < deadline, f"job never failed: {current}"
        if proc.poll() is not None:
            assert proc.returncode == 13, "the task's own os._exit(13)"
            deaths += 1
            proc = workers.start(*args)
        time.sleep(0.05)
    failed = producer.get_job(job.id)
    assert failed is not None
    assert failed.attempts == 3 and deaths == 3
    assert failed.last_error is not None and failed.last_error.startswith("recovered: lease")
    assert "attempt 3 of 3" in failed.last_error
    pids = [ln[1] for ln in workers.records.started()]
    assert len(pids) == 3 and len(set(pids)) == 3, "each attempt took one process down"
    assert proc.poll() is None, "the worker started after the last death is alive"
    serves(producer)
    no_traceback(workers)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task",
    [
        "hang",
        "ahang",
    ],
)
def test_a_job_hanging_past_its_timeout_fails_and_the_worker_keeps_serving(task, workers, producer):
    proc = workers.start("--workers", "2", "--shutdown-timeout", "1", *APP, *FAST)
    hanging = [producer.enqueue(task, {"seq": n}, max_attempts=2) for n in range(3)]
    others = [producer.enqueue("record", {"seq": 100 + n}) for n in range(20)]
    for job in others:
        assert finished(producer, job.id, timeout=10).status == "done"
    for job in hanging:
        failed = finished(producer, job.id, timeout=30)
        assert failed.status == "failed" and failed.attempts == 2, failed
        assert failed.last_error == "TimeoutError: job exceeded its timeout of 1s"
    runs = [ln for ln in workers.records.started() if int(ln[0]) < 100]
    assert len(runs) == 6, "three jobs, two attempts each, no more"
    serves(producer)
    # Six threads (sync) or tasks (async) are still stuck in their hour-long sleep:
    # a graceful shutdown must not wait for them.
    begin = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - begin < 10
    no_traceback(workers)


@pytest.mark.slow
def test_results_that_cannot_be_stored_fail_at_once_with_a_clear_error(workers, producer):
    workers.start("--workers", "4", *APP, *FAST)
    cases = {
        "unserialisable": "ResultError: result is not JSON-serialisable: "
        "Object of type object is not JSON serializable",
        "aunserialisable": "ResultError: result is not JSON-serialisable: "
        "Object of type set is not JSON serializable",
        "not_a_number": "ResultError: result is not JSON-serialisable: "
        "Out of range float values are not JSON compliant",
        "huge": f"ResultError: result is {MIB + 1} bytes, more than the limit of {MIB}",
    }
    jobs = {t: producer.enqueue(t, {"seq": n}, max_attempts=3) for n, t in enumerate(cases)}
    at_limit = producer.enqueue("largest", {"seq": 50}, max_attempts=3)
    for task, error in cases.items():
        failed = finished(producer, jobs[task].id)
        assert failed.status == "failed", failed
        assert failed.attempts == 1, "running it again would produce the same value"
        assert failed.last_error is not None
        assert failed.last_error.startswith(error), failed.last_error
    stored = finished(producer, at_limit.id)
    assert stored.status == "done" and stored.result == "x" * (MIB - 2)
    serves(producer)
    no_traceback(workers)


@pytest.mark.slow
def test_sys_exit_in_a_task_fails_that_job_not_the_worker(workers, producer):
    proc = workers.start("--workers", "2", *APP, *FAST)
    for n, task in enumerate(["exits", "aexits_no_timeout"]):
        failed = finished(producer, producer.enqueue(task, {"seq": n}, max_attempts=1).id)
        assert failed.status == "failed" and failed.last_error is not None
        assert failed.last_error.startswith("SystemExit: 3"), failed.last_error
    assert proc.poll() is None
    serves(producer)


@pytest.mark.slow
def test_sys_exit_in_an_async_task_with_a_timeout_fails_that_job_not_the_worker(workers, producer):
    proc = workers.start("--workers", "2", "--lease", "1", *APP, *FAST)
    job = producer.enqueue("aexits", {"seq": 1}, max_attempts=1)
    wait_until(lambda: workers.records.started(), timeout=15)
    # The job fails at once; the worker process is unaffected.
    failed = finished(producer, job.id, timeout=5)
    assert failed.last_error is not None and failed.last_error.startswith("SystemExit: 3")
    assert proc.poll() is None


@pytest.mark.slow
def test_a_task_that_swallows_cancellation_does_not_keep_its_worker_alive_after_sigterm(
    workers, producer
):
    proc = workers.start("--workers", "2", "--shutdown-timeout", "0.5", *APP, *FAST)
    producer.enqueue("stubborn", {"seq": 1}, max_attempts=1)
    wait_until(lambda: workers.records.started(), timeout=15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(6) == 0

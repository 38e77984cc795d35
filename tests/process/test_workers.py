"""Real worker processes, real signals, on both stores (SPEC §1 guarantees, §3 shutdown)."""

from __future__ import annotations

import collections
import signal
import time

import pytest

from conveyor import Conveyor
from conveyor.jobs import JobStatus
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

FAST = ["--fetch-interval", "0.5"]


def count(app: Conveyor, status: str) -> int:
    return sum(q.get(status, 0) for q in app.store.stats().values())


@pytest.mark.slow
def test_three_processes_run_each_of_3000_jobs_exactly_once(workers, producer):
    for start in range(0, 3000, 500):
        producer.enqueue_many(
            [{"type": "record", "payload": {"seq": i}} for i in range(start, start + 500)]
        )
    for _ in range(3):
        workers.start("--workers", "8", *FAST, env={"LOG_LEVEL": "WARNING"})
    wait_until(lambda: count(producer, "done") == 3000, timeout=120, message="all 3000 jobs done")
    seqs = collections.Counter(workers.records.seqs())
    assert len(seqs) == 3000 and set(seqs.values()) == {1}, "each job ran exactly once"
    pids = {ln[1] for ln in workers.records.finished()}
    assert len(pids) == 3, "every process took part"
    assert count(producer, "pending") == count(producer, "processing") == 0


def test_sigkilled_workers_job_is_recovered_by_another_within_a_lease(workers, producer):
    job = producer.enqueue("slow", {"seq": 1, "seconds": 3})
    first = workers.start("--workers", "2", "--lease", "2", *FAST)
    wait_until(lambda: workers.records.started(), timeout=15, message="job started")
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(5)
    workers.start("--workers", "2", "--lease", "2", *FAST)
    wait_until(
        lambda: len(workers.records.started()) == 2,
        timeout=15,
        message="job started again by the second worker",
    )
    restarted_after = time.monotonic() - killed_at
    assert restarted_after < 2 * 2 + 2, f"recovered {restarted_after:.1f}s after the kill"
    done = wait_until(lambda: (j := producer.get_job(job.id)).status == "done" and j, timeout=15)
    assert done.attempts == 2
    first_pid, second_pid = (ln[1] for ln in workers.records.started())
    assert first_pid != second_pid
    assert workers.records.seqs() == ["1"], "only the second run completed"


def test_long_job_on_healthy_worker_is_never_recovered(workers, producer):
    # 4 s of work under a 1 s lease: only heartbeats keep it; a second worker watches.
    job = producer.enqueue("aslow", {"seq": 7, "seconds": 4})
    workers.start("--workers", "2", "--lease", "1", *FAST)
    wait_until(lambda: workers.records.started(), timeout=15)
    workers.start("--workers", "2", "--lease", "1", *FAST)
    done = wait_until(lambda: (j := producer.get_job(job.id)).status == "done" and j, timeout=20)
    assert done.attempts == 1 and done.last_error is None
    assert len(workers.records.started()) == 1 and workers.records.seqs() == ["7"]


def test_sigterm_lets_the_running_job_finish_and_exits_zero(workers, producer):
    job = producer.enqueue("slow", {"seq": 1, "seconds": 1.5})
    proc = workers.start("--workers", "2", *FAST)
    wait_until(lambda: workers.records.started(), timeout=15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert producer.get_job(job.id).status == JobStatus.DONE
    assert workers.records.seqs() == ["1"]


def test_sigterm_with_short_timeout_hands_the_job_back(workers, producer):
    job = producer.enqueue("aslow", {"seq": 1, "seconds": 60})
    proc = workers.start("--workers", "2", "--shutdown-timeout", "0.5", *FAST)
    wait_until(lambda: workers.records.started(), timeout=15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    back = producer.get_job(job.id)
    assert back.status == JobStatus.PENDING
    assert back.attempts == 0, "handing back does not consume an attempt"
    assert back.last_error is None
    assert "handed back" in workers.log(0)


def test_task_failing_twice_then_succeeding_ends_done_after_three_attempts(workers, producer):
    job = producer.enqueue("flaky", {"seq": 5, "failures": 2})
    workers.start("--workers", "2", *FAST)
    done = wait_until(lambda: (j := producer.get_job(job.id)).status == "done" and j, timeout=30)
    assert done.attempts == 3 and done.result == "ok"
    assert "planned failure 2 of 2" in (done.last_error or "")
    starts = [float(ln[2]) for ln in workers.records.started()]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 2
    assert 1.5 <= gaps[0] <= 3.5, gaps  # 2 s ± 20 %, plus scheduling slack
    assert gaps[1] > gaps[0], f"backoff grows: {gaps}"


def test_priority_10_runs_before_a_backlog_of_priority_0(workers, producer):
    producer.enqueue_many([{"type": "record", "payload": {"seq": i}} for i in range(30)])
    producer.enqueue("record", {"seq": 999}, priority=10)
    workers.start("--workers", "1", "--fetch-limit", "1", *FAST)
    wait_until(lambda: len(workers.records.seqs()) == 31, timeout=30)
    assert workers.records.seqs()[0] == "999"


def test_delayed_job_does_not_start_early(workers, producer):
    workers.start("--workers", "2", *FAST)
    enqueued = time.time()
    job = producer.enqueue("record", {"seq": 1}, delay=2)
    producer.enqueue("record", {"seq": 2})  # proves the worker is live meanwhile
    wait_until(lambda: producer.get_job(job.id).status == "done", timeout=15)
    starts = {ln[0]: float(ln[2]) for ln in workers.records.finished()}
    assert starts["1"] >= enqueued + 2.0
    assert starts["2"] < starts["1"]


def test_sigterm_hands_back_a_running_sync_job_only_after_its_process_is_gone(workers, producer):
    # A sync task's thread cannot be stopped: the job must not be runnable elsewhere while
    # this process (and so that thread) may still be alive.
    job = producer.enqueue("slow", {"seq": 1, "seconds": 60})
    proc = workers.start("--workers", "2", "--shutdown-timeout", "0.5", *FAST)
    wait_until(lambda: workers.records.started(), timeout=15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    back = producer.get_job(job.id)
    assert back.status == JobStatus.PENDING and back.attempts == 0
    assert back.run_at > back.updated_at, "runnable only after a grace period"


def test_sqlite_workers_run_on_uvloop_where_it_is_installed(workers, producer, store_url):
    try:
        import uvloop  # noqa: F401
    except ImportError:
        expected = "asyncio"
    else:
        expected = "uvloop" if store_url.startswith("sqlite") else "asyncio"
    job = producer.enqueue("loop_kind")
    workers.start("--workers", "1", *FAST)
    wait_until(
        lambda: producer.get_job(job.id).status == JobStatus.DONE, timeout=15, message="job done"
    )
    assert producer.get_job(job.id).result.startswith(expected)


def test_an_async_task_blocking_its_loop_past_the_lease_runs_once(workers, producer):
    # Leases are renewed from a thread of their own: a loop blocked for 3 leases does not let
    # them lapse, so no other worker recovers the job and starts it again (SPEC §6).
    job = producer.enqueue("ablock", {"seq": 1, "seconds": 6})
    for _ in range(2):
        workers.start("--workers", "2", "--lease", "2", *FAST)

    def done():
        current = producer.get_job(job.id)
        return current if current.status in ("done", "failed") else None

    final = wait_until(done, timeout=30, message="job finished")
    assert final.status == "done" and final.attempts == 1 and final.last_error is None, final
    assert len(workers.records.started()) == 1, "one run, never recovered and run again"
    for n in range(2):
        assert "recovered" not in workers.log(n), workers.log(n)

"""Process isolation (SPEC §6) in real `conveyor worker` processes, on both stores: an
isolated task runs in a child process that is killed at its timeout or cancel (its slot
reused at once, its job never run twice at once), a child that dies fails only its job,
children that leak are replaced, and none outlives its worker.

The tasks (tests/support/isolated_app.py) record the pid that ran them, so each test judges
by what really ran where."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.jobs import Job, JobStatus
from tests.support.procs import CONVEYOR, ROOT, Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]

APP = ["--app", "tests.support.isolated_app:app"]  # the last --app wins over procs.py's
FAST = ["--fetch-interval", "0.5"]
MIB = 1024 * 1024


@pytest.fixture
def producer(store_url):
    # without the tasks registered: tests pass the max_attempts a task declares
    app = Conveyor(store_url)
    yield app
    app.close()


def finished(app: Conveyor, job_id: int, timeout: float = 30) -> Job:
    def check() -> Job | None:
        job = app.get_job(job_id)
        return job if job is not None and job.status in ("done", "failed", "cancelled") else None

    job = wait_until(check, timeout=timeout, message=f"job {job_id} finished")
    assert job is not None
    return job


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, the fork server, their children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def started(workers: Workers, seq: int) -> list[list[str]]:
    return [ln for ln in workers.records.started() if ln[0] == str(seq)]


def run_of(workers: Workers, seq: int) -> list[str]:
    runs = [ln for ln in workers.records.finished() if ln[0] == str(seq)]
    assert len(runs) == 1, runs
    return runs[0]


def no_traceback(workers: Workers) -> None:
    for n in range(len(workers.procs)):
        assert "Traceback" not in workers.log(n), workers.log(n)


def test_an_isolated_task_past_its_timeout_is_killed_and_its_slot_reused_at_once(workers, producer):
    proc = workers.start("--workers", "1", *APP, *FAST)
    hanging = producer.enqueue("hang", {"seq": 1}, max_attempts=1)
    after = producer.enqueue("record", {"seq": 2})
    failed = finished(producer, hanging.id, timeout=30)
    assert failed.status == "failed", failed
    assert failed.last_error == "TimeoutError: job exceeded its timeout of 1s"
    [(_, pid, began)] = started(workers, 1)
    assert not alive(int(pid)), "the child that ran past its timeout is gone"
    assert finished(producer, after.id).status == "done"
    # one slot: the next job could start only once the hung one was stopped. The timeout
    # counts from when the worker handed the job over, a little before the child's own
    # start record (tens of ms on a loaded machine): hence the 0.2 s below the second.
    next_start = float(started(workers, 2)[0][2])
    assert float(began) + 0.8 < next_start < float(began) + 1 + 1.0, (began, next_start)
    assert proc.poll() is None
    no_traceback(workers)


def test_a_task_ignoring_sigterm_is_killed_after_the_grace(workers, producer):
    workers.start("--workers", "1", *APP, *FAST)
    job = producer.enqueue("stubborn", {"seq": 1}, max_attempts=1)
    failed = finished(producer, job.id, timeout=30)
    assert failed.last_error == "TimeoutError: job exceeded its timeout of 1s"
    [(_, pid, began)] = started(workers, 1)
    assert not alive(int(pid))
    # SIGTERM at 1 s, SIGKILL 5 s later; the outcome is written once the child is dead
    assert failed.finished_at is not None
    assert failed.finished_at.timestamp() - float(began) > 1 + 5 - 0.5
    assert "SIGKILL" in workers.log(0)


@pytest.mark.parametrize(
    ("task", "error"),
    [
        ("exit13", "ChildDied: the task's process exited with code 13"),
        ("segfault", "ChildDied: the task's process was killed by signal 11 (SIGSEGV)"),
    ],
)
def test_a_child_that_dies_fails_only_its_job_and_the_worker_keeps_serving(
    task, error, workers, producer
):
    proc = workers.start("--workers", "2", *APP, *FAST)
    job = producer.enqueue(task, {"seq": 1}, max_attempts=1)
    failed = finished(producer, job.id)
    assert failed.status == "failed" and failed.attempts == 1, failed
    assert failed.last_error == error
    assert proc.poll() is None, "the worker lives on"
    others = [producer.enqueue("record", {"seq": 10 + n}) for n in range(4)]
    assert all(finished(producer, j.id).status == "done" for j in others)
    assert str(proc.pid) not in {ln[1] for ln in workers.records.finished()}
    no_traceback(workers)


def test_max_tasks_per_child_replaces_children(workers, producer):
    proc = workers.start("--workers", "2", "--max-tasks-per-child", "2", *APP, *FAST)
    jobs = [producer.enqueue("record", {"seq": n}) for n in range(10)]
    assert all(finished(producer, j.id).status == "done" for j in jobs)
    per_pid = Counter(ln[1] for ln in workers.records.finished())
    assert max(per_pid.values()) <= 2, per_pid
    assert len(per_pid) >= 5, per_pid
    assert str(proc.pid) not in per_pid
    no_traceback(workers)


def test_max_memory_per_child_replaces_a_child_that_grew_past_it(workers, producer):
    limit_mib = 150
    workers.start("--workers", "1", "--max-memory-per-child", str(limit_mib), *APP, *FAST)
    jobs = [producer.enqueue("leak", {"seq": n, "mib": 40}) for n in range(8)]
    assert all(finished(producer, j.id).status == "done" for j in jobs)
    runs = sorted(workers.records.finished(), key=lambda ln: int(ln[0]))
    assert len({ln[1] for ln in runs}) >= 2, "a child was replaced"
    # no job ran in a child that had already reported more than the limit
    over: set[str] = set()
    for seq, pid, _, _, rss in runs:
        assert pid not in over, f"job {seq} ran in child {pid} after it grew past the limit"
        if int(rss) > limit_mib * MIB:
            over.add(pid)
    assert over, "some child grew past the limit"
    assert "is over --max-memory-per-child" in workers.log(0)


def test_pool_process_runs_plain_sync_tasks_in_children_and_async_ones_on_the_loop(
    workers, producer
):
    proc = workers.start("--workers", "2", *APP, *FAST, env={"WORKER_POOL": "process"})
    sync_job = producer.enqueue("plain", {"seq": 1})
    async_job = producer.enqueue("aplain", {"seq": 2})
    assert finished(producer, sync_job.id).status == "done"
    assert finished(producer, async_job.id).status == "done"
    assert run_of(workers, 1)[1] != str(proc.pid), "the sync task ran in a child"
    assert run_of(workers, 2)[1] == str(proc.pid), "the async task ran on the worker's loop"
    no_traceback(workers)


def test_without_pool_process_plain_sync_tasks_stay_on_the_worker(workers, producer):
    proc = workers.start("--workers", "2", *APP, *FAST)
    job = producer.enqueue("plain", {"seq": 1})
    assert finished(producer, job.id).status == "done"
    assert run_of(workers, 1)[1] == str(proc.pid)


# the worker renews every 0.5 s, so it learns of a cancel within half a second
CANCELLABLE = ["--workers", "2", "--lease", "1.5", *APP, *FAST]


def test_cancelling_a_running_isolated_task_kills_its_child(workers, producer):
    workers.start(*CANCELLABLE)
    job = producer.enqueue("span", {"seq": 1, "seconds": 30})
    [(_, pid, began)] = wait_until(lambda: started(workers, 1), timeout=15)
    producer.store.cancel(job.id)
    wait_until(lambda: not alive(int(pid)), timeout=3, message="the child killed")
    killed_at = time.time()
    assert killed_at - float(began) < 3
    assert finished(producer, job.id).status == JobStatus.CANCELLED
    seq, _, _, end, how = run_of(workers, 1)
    assert how == "killed" and float(end) - float(began) < 3
    # the slot is free again: another job runs
    other = producer.enqueue("record", {"seq": 2})
    assert finished(producer, other.id, timeout=10).status == "done"
    no_traceback(workers)


def test_an_isolated_job_retried_right_after_its_cancel_never_overlaps_the_killed_run(
    workers, producer
):
    for _ in range(2):
        workers.start(*CANCELLABLE)
    job = producer.enqueue("span", {"seq": 1, "seconds": 3})
    wait_until(lambda: started(workers, 1), timeout=15)
    producer.store.cancel(job.id)
    assert producer.store.retry(job.id).status == JobStatus.PENDING

    def done() -> Job | None:
        current = producer.get_job(job.id)
        return current if current is not None and current.status == JobStatus.DONE else None

    final = wait_until(done, timeout=40, message="the retried job done")
    assert final.attempts == 2, final
    spans = sorted(
        (float(ln[2]), float(ln[3]), ln[4:]) for ln in workers.records.finished() if ln[0] == "1"
    )
    assert len(spans) == 2 == len(started(workers, 1)), spans
    (first_start, first_end, how), (second_start, _, _) = spans
    assert how == ["killed"], "the first run was stopped, not run to its end"
    assert first_end - first_start < 3 - 0.5, spans
    assert second_start >= first_end, f"two runs overlapped: {spans}"
    for n in range(2):
        assert "Traceback" not in workers.log(n), workers.log(n)


def test_sigterm_hands_the_isolated_job_back_and_leaves_no_child_alive(workers, producer):
    proc = workers.start("--workers", "2", "--shutdown-timeout", "0.5", *APP, *FAST)
    job = producer.enqueue("span", {"seq": 1, "seconds": 30})
    [(_, pid, _)] = wait_until(lambda: started(workers, 1), timeout=15)
    below = descendants(proc.pid)
    assert int(pid) in below
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    wait_until(lambda: not any(alive(p) for p in below), timeout=3, message="no child left")
    handed_back = producer.get_job(job.id)
    assert handed_back is not None
    assert handed_back.status == JobStatus.PENDING and handed_back.attempts == 0, handed_back
    assert "handed back" in workers.log(0)
    no_traceback(workers)


def test_a_sigkilled_workers_children_do_not_outlive_it(workers, producer):
    proc = workers.start("--workers", "2", *APP, *FAST)
    producer.enqueue("span", {"seq": 1, "seconds": 30})
    producer.enqueue("span", {"seq": 2, "seconds": 30})
    wait_until(lambda: len(workers.records.started()) == 2, timeout=15)
    below = descendants(proc.pid)
    assert len(below) >= 3, below  # two children and the fork server
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    wait_until(lambda: not any(alive(p) for p in below), timeout=3, message="no child left")
    assert not workers.records.finished(), "no run went on to its end"


def test_sigint_to_the_process_group_reaches_only_the_worker(workers, producer):
    """^C in a terminal signals the whole group: the children ignore it and the worker
    shuts down gracefully, letting the running job finish."""
    log = open(workers.logdir / "worker0.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            CONVEYOR,
            "worker",
            "--database-url",
            workers.url,
            "--workers",
            "1",
            "--shutdown-timeout",
            "10",
            *APP,
            *FAST,
        ],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_TEST_RECORD": str(workers.records.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    workers.procs.append(proc)
    job = producer.enqueue("span", {"seq": 1, "seconds": 2})
    wait_until(lambda: started(workers, 1), timeout=15)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(15) == 0
    assert finished(producer, job.id, timeout=5).status == "done"
    assert run_of(workers, 1)[4:] == []  # ran to its end, not killed

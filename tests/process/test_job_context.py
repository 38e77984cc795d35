"""The job context in real worker processes, on both stores (SPEC §6): cancellation within
a second of `conveyor jobs cancel`, progress visible over HTTP, Snooze, Retry(in_=…), fence,
and the warning for a task that blocks the event loop."""

from __future__ import annotations

import subprocess

import pytest

from conveyor import Conveyor
from conveyor.jobs import JobStatus
from tests.api.servers import ServeProcess
from tests.support.procs import CONVEYOR, ROOT, Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

# the default lease (30 s: a heartbeat every 10 s), so only the cancel notification can
# tell the worker within a second
WORKER = ["--workers", "2", "--fetch-interval", "0.5"]


def started(workers: Workers, seq: int) -> bool:
    return any(ln[0] == str(seq) for ln in workers.records.started())


def ended_at(workers: Workers, seq: int) -> float | None:
    ends = [float(ln[3]) for ln in workers.records.finished() if ln[0] == str(seq)]
    return ends[0] if ends else None


def finished(app: Conveyor, job_id: int, timeout: float = 30):
    def check():
        job = app.get_job(job_id)
        return (
            job if job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED) else None
        )

    return wait_until(check, timeout=timeout, message=f"job {job_id} finished")


@pytest.mark.parametrize("task", ["until_cancelled", "aspan"], ids=["sync", "async"])
def test_a_running_job_stops_within_a_second_of_conveyor_jobs_cancel(
    task, workers, producer, store_url
):
    workers.start(*WORKER)
    job = producer.enqueue(task, {"seq": 1, "seconds": 60})
    wait_until(lambda: started(workers, 1), timeout=15, message="job started")
    cancel = subprocess.run(
        [CONVEYOR, "jobs", "cancel", str(job.id), "--database-url", store_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert cancel.returncode == 0, cancel.stderr
    cancelled_at = producer.get_job(job.id).finished_at.timestamp()  # the cancel's own time
    stopped = wait_until(lambda: ended_at(workers, 1), timeout=10, message="run stopped")
    print(f"cancel[{task}]: stopped {stopped - cancelled_at:.3f}s after the cancel")
    assert stopped - cancelled_at < 1.0, f"stopped {stopped - cancelled_at:.2f}s after cancel"
    final = producer.get_job(job.id)
    assert final.status == JobStatus.CANCELLED and final.result is None
    # its slot is free again and the worker serves on
    after = producer.enqueue("record", {"seq": 2})
    assert finished(producer, after.id, timeout=10).status == JobStatus.DONE


def test_progress_is_visible_over_http_while_the_job_runs(store_url, tmp_path, producer):
    record = tmp_path / "record.txt"
    serve = ServeProcess(
        tmp_path,
        store_url,
        "--app",
        "tests.support.apps:app",
        "--workers",
        "2",
        env={"PYTHONPATH": str(ROOT), "CONVEYOR_TEST_RECORD": str(record)},
    )
    try:
        serve.wait_serving()
        with serve.client() as client:
            created = client.post("/jobs", json={"type": "progressing", "payload": {"seq": 1}})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]

            def reported():
                body = client.get(f"/jobs/{job_id}").json()
                return body if body["progress"] is not None else None

            body = wait_until(reported, timeout=5, message="progress stored")
            assert body["status"] == "processing"
            assert body["progress"] == 0.5 and body["progress_message"] == "half way"
            assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    finally:
        serve.close()


def test_snooze_comes_back_later_without_using_an_attempt(workers, producer):
    workers.start(*WORKER)
    job = producer.enqueue("snoozer", {"seq": 1, "seconds": 1})
    final = finished(producer, job.id)
    assert final.status == JobStatus.DONE
    assert final.attempts == 1 and final.result == 1, "the snoozed run gave its attempt back"
    starts = sorted(float(ln[2]) for ln in workers.records.started() if ln[0] == "1")
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.0


def test_retry_in_starts_the_next_attempt_that_much_later_and_fences_differ(workers, producer):
    workers.start(*WORKER)
    job = producer.enqueue("aretrier", {"seq": 1, "in_": 5})
    final = finished(producer, job.id)
    assert final.status == JobStatus.DONE and final.attempts == 2
    assert final.last_error.startswith("Retry: retry requested in 5")
    first_end = ended_at(workers, 1)
    second_start = max(float(ln[2]) for ln in workers.records.started() if ln[0] == "1")
    assert 5.0 <= second_start - first_end < 6.5, second_start - first_end
    fences = [ln[1] for ln in workers.records.lines(".fences")]
    assert len(fences) == 2 and fences[0] != fences[1] and final.result == fences[1]


def test_a_task_blocking_the_event_loop_is_named_in_a_warning(workers, producer):
    workers.start("--workers", "2", "--lease", "2", "--fetch-interval", "0.5")
    job = producer.enqueue("ablock", {"seq": 1, "seconds": 3})
    assert finished(producer, job.id).status == JobStatus.DONE
    log = wait_until(
        lambda: "blocked" in workers.log(0) and workers.log(0), timeout=5, message="warning"
    )
    assert "the event loop has been blocked for" in log
    assert f"task 'ablock' (job {job.id})" in log

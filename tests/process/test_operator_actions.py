"""Operator actions on a running job never start a second run beside the first (SPEC §1,
§6; docs/guarantees.md G3): real worker processes on both stores, the tasks' own start and
end records as the judge."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidTransition
from conveyor.jobs import JobStatus
from tests.support.procs import Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

# a short lease: the worker renews every second, so it learns of a cancel within a second
WORKER = ["--workers", "2", "--lease", "3", "--fetch-interval", "0.5"]
RUN_SECONDS = 2.5


def runs(workers: Workers, seq: int) -> list[tuple[float, float]]:
    """(start, end) of every run of `seq` that ended, by the task's own record."""
    return sorted(
        (float(ln[2]), float(ln[3])) for ln in workers.records.finished() if ln[0] == str(seq)
    )


def starts(workers: Workers, seq: int) -> int:
    return sum(1 for ln in workers.records.started() if ln[0] == str(seq))


def assert_never_overlapping(spans: list[tuple[float, float]]) -> None:
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two runs overlapped: {spans}"


def cancel_retry(app: Conveyor, job_id: int) -> None:
    app.store.cancel(job_id)
    assert app.store.retry(job_id).status == JobStatus.PENDING


def retry_cancel_retry(app: Conveyor, job_id: int) -> None:
    with pytest.raises(InvalidTransition, match="processing"):
        app.store.retry(job_id)
    cancel_retry(app, job_id)


def cancel_retry_twice(app: Conveyor, job_id: int) -> None:
    cancel_retry(app, job_id)
    cancel_retry(app, job_id)


@pytest.mark.parametrize("task", ["slow", "aspan"], ids=["sync", "async"])
@pytest.mark.parametrize("actions", [cancel_retry, retry_cancel_retry, cancel_retry_twice])
def test_operator_actions_on_a_running_job_never_overlap_two_runs(task, actions, workers, producer):
    for _ in range(2):
        workers.start(*WORKER)
    job = producer.enqueue(task, {"seq": 1, "seconds": RUN_SECONDS})
    wait_until(lambda: starts(workers, 1) == 1, timeout=15, message="first run started")
    actions(producer, job.id)

    def done():
        current = producer.get_job(job.id)
        return current if current.status == JobStatus.DONE else None

    final = wait_until(done, timeout=40, message="the retried job done")
    # twice: the first retry may start its run before the second cancel, when the first run
    # had stopped at once (an async task, told by the cancel's notification): three runs
    assert final.attempts in ({2, 3} if actions is cancel_retry_twice else {2}), final
    spans = runs(workers, 1)
    assert len(spans) == final.attempts == starts(workers, 1), spans
    assert_never_overlapping(spans)
    if task == "aspan":
        # the cancelled async run was stopped within about a heartbeat, not run to its end
        first_start, first_end = spans[0]
        assert first_end - first_start < RUN_SECONDS - 0.5, spans
    for n in range(2):
        assert "Traceback" not in workers.log(n), workers.log(n)

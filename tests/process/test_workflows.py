"""Workflows (SPEC §8) run by real worker processes on both stores: a diamond runs in
dependency order and its last step reads its dependencies' results; a failure cancels what
depends on it, transitively, while "run" dependents run; isolated tasks read their
dependencies too."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.jobs import FINISHED, Job, JobStatus
from tests.support.procs import Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]


def finished(app: Conveyor, ids: list[int], timeout: float = 60) -> dict[int, Job]:
    def all_finished() -> bool:
        return all(app.get_job(i).status in FINISHED for i in ids)

    wait_until(all_finished, timeout=timeout, message=f"{len(ids)} jobs finished")
    return {i: job for i in ids if (job := app.get_job(i)) is not None}


def runs(workers: Workers) -> dict[int, tuple[float, float]]:
    """seq → (start, end) of every recorded run."""
    return {int(ln[0]): (float(ln[2]), float(ln[3])) for ln in workers.records.finished()}


def test_a_diamond_runs_in_order_and_its_last_step_reads_the_results(workers, producer):
    for _ in range(3):
        workers.start("--workers", "4", "--fetch-interval", "0.5")
    a, b, c, d = producer.enqueue_many(
        [
            {"type": "slow", "payload": {"seq": 1, "seconds": 0.3}},
            {"type": "slow", "payload": {"seq": 2, "seconds": 0.2}, "depends_on": ["@0"]},
            {"type": "slow", "payload": {"seq": 3, "seconds": 0.4}, "depends_on": ["@0"]},
            {"type": "gather", "payload": {"seq": 4}, "depends_on": ["@1", "@2"]},
        ]
    )
    jobs = finished(producer, [a.id, b.id, c.id, d.id])
    assert all(job.status == JobStatus.DONE for job in jobs.values())
    spans = runs(workers)
    assert spans[1][1] <= spans[2][0] and spans[1][1] <= spans[3][0]  # b and c after a
    assert max(spans[2][1], spans[3][1]) <= spans[4][0]  # d after both
    assert spans[2][0] < spans[3][1] and spans[3][0] < spans[2][1]  # b and c overlapped
    result = producer.get_job(d.id).result
    assert result == {
        "seq": 4,
        "results": [2, 3],
        "statuses": ["done", "done"],
        "finished_before_start": True,
    }


def test_a_failure_cancels_its_dependents_transitively_and_run_dependents_run(workers, producer):
    for _ in range(2):
        workers.start("--workers", "4", "--fetch-interval", "0.5")
    root, child, grandchild, runner = producer.enqueue_many(
        [
            # the producer does not know the task's own max_attempts=1: said here, or the
            # root is retried with backoff for half a minute before it fails for good
            {"type": "explode", "payload": {"seq": 1}, "max_attempts": 1},
            {"type": "record", "payload": {"seq": 2}, "depends_on": ["@0"]},
            {"type": "record", "payload": {"seq": 3}, "depends_on": ["@1"]},
            {
                "type": "gather",
                "payload": {"seq": 4},
                "depends_on": ["@0", "@1"],
                "on_dependency_failure": "run",
            },
        ]
    )
    jobs = finished(producer, [root.id, child.id, grandchild.id, runner.id])
    assert jobs[root.id].status == JobStatus.FAILED and jobs[root.id].attempts == 1
    assert jobs[child.id].status == JobStatus.CANCELLED
    assert jobs[child.id].last_error == f"dependency {root.id} ended failed"
    assert jobs[grandchild.id].status == JobStatus.CANCELLED
    assert jobs[grandchild.id].last_error == f"dependency {child.id} ended cancelled"
    assert jobs[runner.id].status == JobStatus.DONE
    assert producer.get_job(runner.id).result["statuses"] == ["failed", "cancelled"]  # type: ignore[index]
    assert sorted(runs(workers)) == [1, 4]  # the cancelled ones never ran


def test_an_isolated_task_reads_its_dependencies(workers, producer):
    workers.start("--workers", "2", "--pool", "process", "--fetch-interval", "0.5")
    a = producer.enqueue("record", {"seq": 1})
    d = producer.enqueue("gather", {"seq": 2}, depends_on=[a.id])
    jobs = finished(producer, [a.id, d.id])
    assert jobs[d.id].status == JobStatus.DONE
    assert producer.get_job(d.id).result["results"] == [1]  # type: ignore[index]

"""Bulk actions (SPEC §8) while real worker processes run, on both stores: a bulk cancel
works in batches beside workers draining another queue, which keeps draining, and a bulk
cancel of processing jobs stops their runs, each run once."""

from __future__ import annotations

from collections import Counter

import pytest

from conveyor import Conveyor
from conveyor.jobs import BulkFilter, JobStatus
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

DRAIN = 2000
PARKED = 300


def counts(app: Conveyor, queue: str) -> dict[str, int]:
    return app.stats().get(queue, {})


def test_bulk_cancel_of_pending_jobs_while_workers_drain_another_queue(workers, producer):
    parked = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": -i}, "queue": "parked"} for i in range(PARKED)]
    )
    producer.enqueue_many(
        [{"type": "record", "payload": {"seq": i}, "queue": "drain"} for i in range(DRAIN)]
    )
    for _ in range(2):
        workers.start("--queues", "drain", "--workers", "4", "--fetch-interval", "0.5")
    wait_until(
        lambda: counts(producer, "drain").get("done", 0) >= 100,
        timeout=30,
        message="workers draining",
    )
    done_before = counts(producer, "drain").get("done", 0)
    calls: list[int] = []
    real = producer.store.cancel_many

    def cancel_many(ids, **kw):
        calls.append(len(ids))
        return real(ids, **kw)

    producer.store.cancel_many = cancel_many  # type: ignore[method-assign]
    # batches of 50: six transactions, with the workers' own between them
    cancelled = producer.store.bulk_cancel(BulkFilter(JobStatus.PENDING, queue="parked"), batch=50)
    assert cancelled == PARKED
    assert calls == [50] * 6
    assert counts(producer, "parked") == {"cancelled": PARKED}
    assert {producer.get_job(job.id).status for job in parked} == {JobStatus.CANCELLED}
    if done_before < DRAIN:  # the other queue was not held up
        wait_until(
            lambda: counts(producer, "drain").get("done", 0) > done_before,
            timeout=30,
            message="the other queue still draining",
        )
    wait_until(
        lambda: counts(producer, "drain") == {"done": DRAIN},
        timeout=120,
        message="the other queue drained",
    )
    runs = Counter(line[0] for line in workers.records.finished())
    assert len(runs) == DRAIN and set(runs.values()) == {1}, "each drain job ran once"
    assert not any(seq.startswith("-") for seq in runs), "a cancelled job ran"


def test_bulk_cancel_of_processing_jobs_stops_their_runs(workers, producer):
    for _ in range(2):
        workers.start("--workers", "2", "--lease", "3", "--fetch-interval", "0.5")
    jobs = [
        producer.enqueue("until_cancelled", {"seq": 1}, queue="long"),
        producer.enqueue("until_cancelled", {"seq": 2}, queue="long"),
        producer.enqueue("aspan", {"seq": 3, "seconds": 60}, queue="long"),
        producer.enqueue("aspan", {"seq": 4, "seconds": 60}, queue="long"),
    ]
    wait_until(lambda: len(workers.records.started()) == 4, timeout=30, message="4 runs started")
    assert producer.cancel_jobs(status="processing", queue="long") == 4
    # every run ends (it records when it stops) within about a second, not after 60 s
    finished = wait_until(
        lambda: len(workers.records.finished()) == 4 and workers.records.finished(),
        timeout=15,
        message="the cancelled runs stopped",
    )
    for seq, _pid, start, end in finished:
        assert float(end) - float(start) < 10, f"run {seq} went on for {float(end) - float(start)}"
    assert {producer.get_job(job.id).status for job in jobs} == {JobStatus.CANCELLED}
    # no second run: each job started once, and nothing is left to claim
    assert Counter(line[0] for line in workers.records.started()) == Counter(
        {"1": 1, "2": 1, "3": 1, "4": 1}
    )
    assert counts(producer, "long") == {"cancelled": 4}
    for n in range(2):
        assert "Traceback" not in workers.log(n), workers.log(n)

"""Contract: cancel_many / retry_many apply the one-job rules of cancel and retry to many ids,
and bulk actions over a filter (SPEC §8) work in batches, each its own transaction, on both
stores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from conveyor.errors import InvalidJob, InvalidTransition, JobNotFound
from conveyor.jobs import BulkFilter, Finish, Job, JobFilter, JobStatus
from conveyor.stores import Store
from tests.support.factories import LEASE, add, claim_one

FAILED = JobStatus.FAILED
PENDING = JobStatus.PENDING


def make_failed(store: Store, n: int, *, queue: str = "q", type: str = "t", **kw: Any) -> list[Job]:
    """`n` failed jobs of `queue` (claimed from that queue only, failed for good)."""
    for _ in range(n):
        add(store, type, queue=queue, max_attempts=1, **kw)
    claimed = store.claim(worker="w", queues=[queue], limit=n, lease=LEASE)
    assert len(claimed) == n
    applied = store.finish_many([Finish.failed(job.lease_ref(), "boom") for job in claimed])
    assert set(applied.values()) == {FAILED}
    return sorted(claimed, key=lambda job: job.id)


def snapshot(store: Store, exclude: Sequence[int] = ()) -> dict[int, dict[str, Any]]:
    """Every job's JSON by id, but those of `exclude`."""
    jobs = store.list_jobs(JobFilter(limit=1000))
    return {job.id: job.to_json() for job in jobs if job.id not in exclude}


def statuses(store: Store, ids: Sequence[int]) -> set[str]:
    return {store.get_job(job_id).status.value for job_id in ids}


def spy(store: Store, name: str, before: Callable[..., None] | None = None) -> list[list[int]]:
    """Record the ids of every call of store.`name` (one call of cancel_many/retry_many with
    at most one batch of ids = one transaction); `before(ids)` runs ahead of each call."""
    calls: list[list[int]] = []
    real = getattr(store, name)

    def wrapper(ids: Sequence[int], **kw: Any) -> list[int]:
        calls.append(list(ids))
        if before is not None:
            before(ids)
        return real(ids, **kw)

    setattr(store, name, wrapper)
    return calls


# -- cancel_many / retry_many: the one-job rules, many ids ------------------------------------
def test_cancel_many_cancels_pending_and_processing_and_reports_them(store):
    running = add(store)
    claim_one(store)
    done = add(store)
    store.complete(claim_one(store).lease_ref())
    pending = add(store)
    assert store.cancel_many([done.id, pending.id, 987654, running.id, pending.id]) == [
        running.id,
        pending.id,
    ]
    assert statuses(store, [running.id, pending.id]) == {"cancelled"}
    assert store.get_job(done.id).status == JobStatus.DONE
    # the running job keeps its lease: its worker learns at once (heartbeat) and stops it
    ref = store.get_job(running.id).lease_ref()
    assert store.heartbeat([ref], lease=LEASE).stop == {running.id}
    assert store.cancel_many([running.id, pending.id]) == []  # finished: nothing changes


def test_cancel_many_with_a_status_leaves_the_other_status_alone(store):
    running = add(store)
    claim_one(store)
    pending = add(store)
    assert store.cancel_many([running.id, pending.id], status=PENDING) == [pending.id]
    assert store.get_job(running.id).status == JobStatus.PROCESSING


def test_retry_many_keeps_attempts_and_raises_max_attempts(store):
    failed = make_failed(store, 2)
    cancelled = add(store)
    store.cancel(cancelled.id)
    pending = add(store, queue="other")
    ids = [failed[0].id, failed[1].id, cancelled.id, pending.id]
    assert store.retry_many(ids, status=FAILED) == [failed[0].id, failed[1].id]
    assert store.get_job(cancelled.id).status == JobStatus.CANCELLED
    assert store.retry_many(ids) == [cancelled.id]
    for job in failed:
        again = store.get_job(job.id)
        assert again.status == PENDING and again.finished_at is None
        assert (again.attempts, again.max_attempts) == (1, 2)


def test_retry_many_skips_a_unique_key_held_by_an_unfinished_job(store):
    (held,) = make_failed(store, 1, unique_key="K")
    holder = add(store, unique_key="K")  # the key is free again once its job failed
    (twin_a,) = make_failed(store, 1, queue="a", unique_key="T")
    (twin_b,) = make_failed(store, 1, queue="b", unique_key="T")
    free = make_failed(store, 1, queue="c")[0]
    retried = store.retry_many([held.id, twin_a.id, twin_b.id, free.id])
    # the held key is skipped; of two failed jobs with one key only the first is retried
    assert retried == [twin_a.id, free.id]
    assert store.get_job(held.id).status == FAILED
    assert store.get_job(twin_b.id).status == FAILED
    assert store.get_job(holder.id).status == PENDING


def test_single_cancel_and_retry_keep_their_errors(store):
    job = add(store)
    store.complete(claim_one(store).lease_ref())
    with pytest.raises(InvalidTransition, match=f"job {job.id} is done: cannot cancel it"):
        store.cancel(job.id)
    with pytest.raises(InvalidTransition, match=f"job {job.id} is done: cannot retry it"):
        store.retry(job.id)
    with pytest.raises(JobNotFound, match="job 987654 not found"):
        store.cancel(987654)
    with pytest.raises(JobNotFound, match="job 987654 not found"):
        store.retry(987654)
    (keyed,) = make_failed(store, 1, unique_key="K")
    add(store, unique_key="K")
    with pytest.raises(InvalidTransition, match="another unfinished job holds its unique_key"):
        store.retry(keyed.id)
    cancelled = store.cancel(add(store).id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at is not None
    assert store.retry(cancelled.id).status == PENDING


# -- bulk actions over a filter -----------------------------------------------------------------
def test_bulk_retry_changes_exactly_the_filtered_set(store):
    target = make_failed(store, 7, queue="q1", type="t1")
    make_failed(store, 3, queue="q2", type="t1")  # another queue
    make_failed(store, 3, queue="q3", type="t2")  # another type
    cancelled = add(store, "t1", queue="q1")
    store.cancel(cancelled.id)  # another status
    add(store, "t1", queue="q1")  # pending
    ids = [job.id for job in target]
    before = snapshot(store, exclude=ids)
    query = BulkFilter(FAILED, queue="q1", type="t1")
    assert store.bulk_retry(query) == 7
    assert statuses(store, ids) == {"pending"}
    assert snapshot(store, exclude=ids) == before, "a job outside the filter changed"
    assert store.bulk_retry(query) == 0  # none left


def test_bulk_cancel_of_jobs_created_before(store):
    early = [add(store, queue="q") for _ in range(4)]
    late = [add(store, queue="q") for _ in range(3)]
    assert max(job.created_at for job in early) < late[0].created_at
    query = BulkFilter(PENDING, queue="q", created_before=late[0].created_at)
    assert store.bulk_cancel(query) == 4
    assert statuses(store, [job.id for job in early]) == {"cancelled"}
    assert statuses(store, [job.id for job in late]) == {"pending"}


def test_bulk_actions_work_in_batches_of_their_own_transactions(store):
    failed = make_failed(store, 23, queue="q")
    calls = spy(store, "retry_many")
    assert store.bulk_retry(BulkFilter(FAILED, queue="q"), batch=5) == 23
    assert [len(ids) for ids in calls] == [5, 5, 5, 5, 3]
    assert sorted(i for ids in calls for i in ids) == [job.id for job in failed]
    if store.__class__.__name__ == "PostgresStore":  # each batch committed on its own
        assert _writers(store, [job.id for job in failed]) == 5
    cancels = spy(store, "cancel_many")
    assert store.bulk_cancel(BulkFilter(PENDING, queue="q"), batch=10) == 23
    assert [len(ids) for ids in cancels] == [10, 10, 3]
    assert statuses(store, [job.id for job in failed]) == {"cancelled"}


def _writers(store: Any, ids: list[int]) -> int:
    """How many transactions last wrote these rows (PostgreSQL's xmin)."""
    return store._run(
        lambda cur: cur.execute(
            "SELECT count(DISTINCT xmin::text) AS n FROM jobs WHERE id = ANY(%(ids)s)",
            {"ids": ids},
        ).fetchone()["n"]
    )


def test_a_job_that_changed_status_meanwhile_is_left_alone_and_not_counted(store):
    jobs = [add(store, queue="q") for _ in range(6)]
    claimed: list[Job] = []

    def worker_claims_two(ids: Sequence[int]) -> None:
        # between the batch's read and its write, a worker claims two of its jobs
        if not claimed:
            claimed.extend(store.claim(worker="w", queues=["q"], limit=2, lease=LEASE))

    spy(store, "cancel_many", before=worker_claims_two)
    assert store.bulk_cancel(BulkFilter(PENDING, queue="q")) == 4
    assert statuses(store, [job.id for job in claimed]) == {"processing"}
    others = [job.id for job in jobs if job.id not in {c.id for c in claimed}]
    assert statuses(store, others) == {"cancelled"}


def test_each_job_is_read_once_and_new_jobs_are_not_chased(store):
    failed = make_failed(store, 6, queue="q")

    def meanwhile(ids: Sequence[int]) -> None:
        if len(calls) == 2:  # after the first batch: its jobs run and fail again
            claimed = store.claim(worker="w", queues=["q"], limit=10, lease=LEASE)
            store.finish_many([Finish.failed(job.lease_ref(), "again") for job in claimed])
            make_failed(store, 2, queue="q")  # and two new jobs fail

    calls = spy(store, "retry_many", before=meanwhile)
    assert store.bulk_retry(BulkFilter(FAILED, queue="q"), batch=3) == 6
    counts = {job.id: store.get_job(job.id).attempts for job in failed}
    assert sorted(counts.values()) == [1, 1, 1, 2, 2, 2], counts  # retried once each
    assert len(calls) == 2


def test_bulk_actions_refuse_a_status_they_do_not_apply_to(store):
    make_failed(store, 2)
    add(store)
    before = snapshot(store)
    with pytest.raises(InvalidJob, match="retry applies to failed or cancelled jobs, not pending"):
        store.bulk_retry(BulkFilter(PENDING))
    with pytest.raises(InvalidJob, match="cancel applies to pending or processing jobs, not fai"):
        store.bulk_cancel(BulkFilter(FAILED))
    assert snapshot(store) == before


def test_bulk_cancel_of_processing_jobs_tells_their_runs(store):
    add(store, queue="q")
    add(store, queue="q")
    running = store.claim(worker="w", queues=["q"], limit=2, lease=LEASE)
    pending = add(store, queue="q")  # not in the filter
    assert store.bulk_cancel(BulkFilter(JobStatus.PROCESSING, queue="q")) == 2
    assert statuses(store, [job.id for job in running]) == {"cancelled"}
    assert store.get_job(pending.id).status == PENDING
    # their runs keep their leases and are told to stop at their (immediate) renewal
    renewal = store.heartbeat([job.lease_ref() for job in running], lease=LEASE)
    assert renewal.stop == {job.id for job in running}

"""Contract: guarded worker transitions (positive and negative) and operator actions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.errors import InvalidTransition, JobNotFound
from conveyor.jobs import Finish, JobStatus, LeaseRef
from tests.support.factories import LEASE, add, claim_one, later


def test_complete_a_held_job(store):
    add(store)
    job = claim_one(store)
    assert store.complete(job.lease_ref(), '{"ok": [1, 2]}') is True
    done = store.get_job(job.id)
    assert done.status == JobStatus.DONE and done.result == {"ok": [1, 2]}
    assert done.finished_at is not None and done.attempts == 1


def test_complete_refused_for_wrong_worker_or_attempt_or_status(store):
    add(store)
    job = claim_one(store)
    ref = job.lease_ref()
    assert store.complete(LeaseRef(job.id, "intruder", ref.attempt)) is False
    assert store.complete(LeaseRef(job.id, ref.worker, ref.attempt + 1)) is False
    assert store.complete(LeaseRef(job.id + 999, ref.worker, ref.attempt)) is False
    assert store.get_job(job.id).status == JobStatus.PROCESSING
    assert store.complete(ref) is True
    assert store.complete(ref) is False  # already done


def test_fail_with_retry_goes_back_to_pending_at_retry_at(store):
    add(store, max_attempts=3)
    job = claim_one(store)
    retry_at = later(60).replace(microsecond=500)
    assert store.fail(job.lease_ref(), "ValueError: x", retry_at=retry_at) == JobStatus.PENDING
    again = store.get_job(job.id)
    assert again.status == JobStatus.PENDING and again.run_at == retry_at
    assert again.last_error == "ValueError: x" and again.finished_at is None
    assert store.claim(worker="w", queues=None, limit=1, lease=LEASE) == []


def test_fail_for_good(store):
    add(store)
    job = claim_one(store)
    assert store.fail(job.lease_ref(), "boom", retry_at=None) == JobStatus.FAILED
    failed = store.get_job(job.id)
    assert failed.status == JobStatus.FAILED and failed.finished_at is not None


def test_fail_refused_for_stale_ref(store):
    add(store)
    job = claim_one(store)
    assert store.fail(LeaseRef(job.id, "other", 1), "boom", retry_at=None) is None
    assert store.get_job(job.id).status == JobStatus.PROCESSING


def test_finish_many_mixes_outcomes_and_reports_only_what_applied(store):
    for _ in range(4):
        add(store, max_attempts=2)
    jobs = store.claim(worker="w", queues=None, limit=4, lease=LEASE)
    a, b, c, d = jobs
    applied = store.finish_many(
        [
            Finish.done(a.lease_ref(), "1"),
            Finish.retry(b.lease_ref(), "E", later(10)),
            Finish.failed(c.lease_ref(), "E"),
            Finish.done(LeaseRef(d.id, "stale", 1), "1"),
        ]
    )
    assert applied == {a.id: JobStatus.DONE, b.id: JobStatus.PENDING, c.id: JobStatus.FAILED}
    assert store.get_job(d.id).status == JobStatus.PROCESSING


def test_release_gives_the_attempt_back(store):
    add(store)
    job = claim_one(store)
    assert store.release([job.lease_ref()]) == {job.id}
    back = store.get_job(job.id)
    assert back.status == JobStatus.PENDING and back.attempts == 0
    assert store.release([job.lease_ref()]) == set()  # no longer held
    assert claim_one(store).attempts == 1


def test_cancel_pending_and_processing(store):
    add(store)
    running = claim_one(store)
    pending = add(store)
    assert store.cancel(pending.id).status == JobStatus.CANCELLED
    cancelled = store.cancel(running.id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at is not None
    # the worker that holds it learns at its next heartbeat and cannot complete it
    assert store.heartbeat([running.lease_ref()], lease=LEASE).stop == {running.id}
    assert store.complete(running.lease_ref()) is False
    assert store.get_job(running.id).status == JobStatus.CANCELLED


def test_cancel_finished_job_is_refused(store):
    add(store)
    job = claim_one(store)
    store.complete(job.lease_ref())
    with pytest.raises(InvalidTransition):
        store.cancel(job.id)
    with pytest.raises(JobNotFound):
        store.cancel(987654)


def test_retry_failed_job_keeps_attempts_and_raises_max_attempts(store):
    add(store, max_attempts=1)
    job = claim_one(store)
    store.fail(job.lease_ref(), "boom", retry_at=None)
    retried = store.retry(job.id)
    assert retried.status == JobStatus.PENDING
    assert retried.attempts == 1 and retried.max_attempts == 2
    assert retried.finished_at is None
    assert claim_one(store).attempts == 2


def test_retry_cancelled_job(store):
    job = add(store, max_attempts=4)
    store.cancel(job.id)
    retried = store.retry(job.id)
    assert retried.status == JobStatus.PENDING and retried.max_attempts == 4


def test_retry_refused_unless_failed_or_cancelled(store):
    job = add(store)
    with pytest.raises(InvalidTransition):
        store.retry(job.id)
    with pytest.raises(JobNotFound):
        store.retry(987654)
    claimed = claim_one(store)
    with pytest.raises(InvalidTransition):
        store.retry(claimed.id)
    store.complete(claimed.lease_ref())
    with pytest.raises(InvalidTransition):
        store.retry(claimed.id)


def test_operator_time_moves_with_now(store):
    job = add(store)
    t = later(500)
    cancelled = store.cancel(job.id, now=t)
    assert abs((cancelled.finished_at - t).total_seconds()) < 0.001
    retried = store.retry(job.id, now=t + timedelta(seconds=1))
    assert abs((retried.run_at - (t + timedelta(seconds=1))).total_seconds()) < 0.001


def test_finish_and_claim_writes_outcomes_and_claims_the_next_batch(store):
    for i in range(5):
        add(store, payload=i)
    first = store.claim(worker="w", queues=None, limit=2, lease=LEASE)
    stale = LeaseRef(first[1].id, "someone-else", 1)
    applied, nxt = store.finish_and_claim(
        [Finish.done(first[0].lease_ref(), '"ok"'), Finish.failed(stale, "x")],
        worker="w",
        queues=None,
        limit=2,
        lease=LEASE,
    )
    assert applied == {first[0].id: JobStatus.DONE}
    assert [j.payload for j in nxt] == [2, 3]
    assert store.get_job(first[0].id).result == "ok"
    assert store.get_job(first[1].id).status == JobStatus.PROCESSING
    applied, none = store.finish_and_claim([], worker="w", queues=None, limit=0, lease=LEASE)
    assert applied == {} and none == []


def test_release_not_before_keeps_the_job_from_other_workers_until_then(store):
    add(store)
    job = claim_one(store)
    t = later(0)
    assert store.release([job.lease_ref()], now=t, not_before=t + timedelta(seconds=2)) == {job.id}
    assert store.claim(worker="w2", queues=None, limit=1, lease=LEASE, now=t) == []
    [again] = store.claim(
        worker="w2", queues=None, limit=1, lease=LEASE, now=t + timedelta(seconds=3)
    )
    assert again.id == job.id and again.attempts == 1

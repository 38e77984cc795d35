"""Contract: the claim (ordering, limits, due time, queues)."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import JobStatus
from conveyor.validation import new_job
from tests.support.factories import LEASE, add, later


def claim(store, limit=10, queues=None, worker="w1", now=None):
    return store.claim(worker=worker, queues=queues, limit=limit, lease=LEASE, now=now)


def test_claim_sets_processing_worker_attempts_and_lease(store):
    job = add(store)
    [claimed] = claim(store)
    assert claimed.id == job.id
    assert claimed.status == JobStatus.PROCESSING
    assert claimed.worker == "w1" and claimed.attempts == 1
    assert claimed.started_at is not None
    assert claim(store) == []


def test_claim_orders_by_priority_then_run_at_then_id(store):
    low = add(store, priority=0)
    high = add(store, priority=10)
    older = add(store, priority=5, run_at=later(-60))
    newer = add(store, priority=5, run_at=later(-30))
    same1 = add(store, priority=1)
    same2 = add(store, priority=1)
    got = [j.id for j in claim(store, limit=10)]
    assert got == [high.id, older.id, newer.id, same1.id, same2.id, low.id]


def test_claim_takes_the_best_jobs_first_when_limited(store):
    ids = [add(store, priority=p).id for p in (1, 5, 3, 4, 2)]
    first = claim(store, limit=2)
    assert [j.priority for j in first] == [5, 4]
    assert {j.id for j in first} <= set(ids)


def test_claim_respects_limit_and_zero(store):
    for _ in range(5):
        add(store)
    assert claim(store, limit=0) == []
    assert len(claim(store, limit=3)) == 3
    assert len(claim(store, limit=3)) == 2


def test_delayed_job_is_not_claimed_before_run_at(store):
    job = add(store, delay=30)
    assert claim(store) == []
    assert [j.id for j in claim(store, now=later(31))] == [job.id]


def test_claim_filters_queues(store):
    a = add(store, queue="a")
    b = add(store, queue="b")
    add(store, queue="c")
    assert [j.id for j in claim(store, queues=["b"])] == [b.id]
    assert [j.id for j in claim(store, queues=["a", "zzz"])] == [a.id]
    assert len(claim(store, queues=None)) == 1


def test_claimed_job_reads_back_as_processing(store):
    add(store)
    [claimed] = claim(store)
    stored = store.get_job(claimed.id)
    assert stored is not None and stored.status == "processing" and stored.worker == "w1"


def test_reclaim_after_retry_increments_attempts(store):
    add(store, max_attempts=3)
    [first] = claim(store)
    assert store.fail(first.lease_ref(), "boom", retry_at=later(-1)) == JobStatus.PENDING
    [second] = claim(store, worker="w2")
    assert second.attempts == 2 and second.worker == "w2"
    assert store.get_job(second.id).last_error == "boom"


def test_claim_lease_is_relative_to_now(store):
    add(store)
    t = later(100)
    [job] = store.claim(worker="w", queues=None, limit=1, lease=timedelta(seconds=5), now=t)
    # not expired at t + 4, expired at t + 6
    assert store.recover_expired(now=t + timedelta(seconds=4)).count == 0
    assert store.recover_expired(now=t + timedelta(seconds=6)).requeued == [job.id]


def test_scheduled_jobs_of_a_higher_priority_neither_hide_nor_lose_their_turn(store):
    # Levels that hold only future jobs are passed over; once due they come first again.
    scheduled = [add(store, priority=9, delay=30).id for _ in range(3)]
    mixed_due = add(store, priority=5).id
    add(store, priority=5, delay=30)
    due = [add(store, priority=p).id for p in (0, 0, -3)]
    assert [j.id for j in claim(store, limit=3)] == [mixed_due, *due[:2]]
    assert [j.id for j in claim(store, limit=10, now=later(31))][:3] == scheduled


def test_claim_fills_its_limit_across_levels_and_queues(store):
    ids = [add(store, priority=p, queue=q).id for p in (3, 2, 1) for q in ("a", "b")]
    got = claim(store, limit=4, queues=["a", "b"])
    assert [j.id for j in got] == ids[:4]
    assert [j.id for j in claim(store, limit=4)] == ids[4:]


def test_a_large_batch_scheduled_for_one_moment_is_claimed_in_full(store):
    """More jobs than a claim reads at once, all with one run_at in the future."""
    at = later(60)
    store.enqueue_many([new_job("t", None, run_at=at) for _ in range(1500)])
    first = store.claim(worker="w", queues=None, limit=1000, lease=LEASE, now=at)
    second = store.claim(worker="w", queues=None, limit=1000, lease=LEASE, now=at)
    assert (len(first), len(second)) == (1000, 500)

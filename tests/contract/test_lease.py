"""Contract: leases, heartbeats and recovery of expired leases."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import JobStatus, LeaseRef, utcnow
from tests.support.factories import add


def test_heartbeat_extends_a_held_lease(store):
    add(store)
    t0 = utcnow()
    [job] = store.claim(worker="w", queues=None, limit=1, lease=timedelta(seconds=10), now=t0)
    renewal = store.heartbeat(
        [job.lease_ref()], lease=timedelta(seconds=10), now=t0 + timedelta(seconds=8)
    )
    assert renewal.lost == set() and renewal.stop == set()
    # the old deadline (t0 + 10) has passed, the renewed one (t0 + 18) has not
    assert store.recover_expired(now=t0 + timedelta(seconds=15)).count == 0
    assert store.recover_expired(now=t0 + timedelta(seconds=19)).requeued == [job.id]


def test_heartbeat_reports_lost_leases(store):
    add(store)
    add(store)
    t0 = utcnow()
    a, b = store.claim(worker="w", queues=None, limit=2, lease=timedelta(seconds=5), now=t0)
    renewal = store.heartbeat(
        [a.lease_ref(), LeaseRef(b.id, "someone-else", b.attempts), LeaseRef(424242, "w", 1)],
        lease=timedelta(seconds=5),
        now=t0,
    )
    assert renewal.lost == {b.id, 424242} and renewal.stop == set()


def test_expired_lease_is_recovered_to_pending_with_a_reason(store):
    job = add(store, max_attempts=3)
    t0 = utcnow()
    [claimed] = store.claim(
        worker="dead-worker", queues=None, limit=1, lease=timedelta(seconds=5), now=t0
    )
    result = store.recover_expired(now=t0 + timedelta(seconds=6))
    assert result.requeued == [job.id] and result.failed == []
    back = store.get_job(job.id)
    assert back.status == JobStatus.PENDING and back.attempts == 1
    assert "recovered" in back.last_error and "dead-worker" in back.last_error
    # the dead worker's late outcome is refused (fencing)
    assert store.complete(claimed.lease_ref()) is False
    assert store.heartbeat([claimed.lease_ref()], lease=timedelta(seconds=5)).lost == {job.id}


def test_recovered_then_reclaimed_job_fences_out_the_first_worker(store):
    add(store)
    t0 = utcnow()
    [first] = store.claim(worker="w1", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    store.recover_expired(now=t0 + timedelta(seconds=6))
    [second] = store.claim(
        worker="w2",
        queues=None,
        limit=1,
        lease=timedelta(seconds=30),
        now=t0 + timedelta(seconds=7),
    )
    assert second.attempts == 2
    assert store.complete(first.lease_ref()) is False
    assert store.fail(first.lease_ref(), "late", retry_at=None) is None
    assert store.release([first.lease_ref()]) == set()
    assert store.complete(second.lease_ref()) is True


def test_exhausted_attempts_are_failed_by_recovery(store):
    job = add(store, max_attempts=1)
    t0 = utcnow()
    store.claim(worker="w", queues=None, limit=1, lease=timedelta(seconds=1), now=t0)
    result = store.recover_expired(now=t0 + timedelta(seconds=2))
    assert result.failed == [job.id] and result.requeued == []
    failed = store.get_job(job.id)
    assert failed.status == JobStatus.FAILED and "recovered" in failed.last_error
    assert failed.finished_at is not None


def test_recover_leaves_live_leases_alone_and_respects_limit(store):
    for _ in range(5):
        add(store)
    t0 = utcnow()
    store.claim(worker="w", queues=None, limit=5, lease=timedelta(seconds=5), now=t0)
    assert store.recover_expired(now=t0 + timedelta(seconds=4)).count == 0
    assert store.recover_expired(limit=2, now=t0 + timedelta(seconds=6)).count == 2
    assert store.recover_expired(limit=10, now=t0 + timedelta(seconds=6)).count == 3
    assert store.recover_expired(now=t0 + timedelta(seconds=6)).count == 0

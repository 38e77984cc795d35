"""Contract: a run's lease outlives an operator's cancel until the run's code has stopped, so
no sequence of cancel, retry and prune can start a second run beside the first (SPEC §1, §6)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.errors import InvalidTransition
from conveyor.jobs import Finish, JobStatus
from tests.support.factories import LEASE, add, claim_one, later


def claim(store, worker="w2", now=None):
    return store.claim(worker=worker, queues=None, limit=10, lease=LEASE, now=now)


def test_a_cancelled_run_keeps_its_lease_and_is_told_to_stop(store):
    add(store)
    running = claim_one(store)
    assert store.cancel(running.id).status == JobStatus.CANCELLED
    renewal = store.heartbeat([running.lease_ref()], lease=LEASE)
    assert renewal.stop == {running.id} and renewal.lost == set()
    # still held: a second heartbeat renews it again
    assert store.heartbeat([running.lease_ref()], lease=LEASE).stop == {running.id}


def test_retry_of_a_cancelled_running_job_waits_until_the_run_has_stopped(store):
    add(store)
    running = claim_one(store)
    store.cancel(running.id)
    retried = store.retry(running.id)
    assert retried.status == JobStatus.PENDING
    assert claim(store) == [], "the cancelled run may still be going"
    store.heartbeat([running.lease_ref()], lease=LEASE)
    assert claim(store) == []
    # its code stops: the run ends without an outcome, and the retried job is free
    assert store.finish_many([Finish.ended(running.lease_ref())]) == {}
    [again] = claim(store)
    assert again.id == running.id and again.attempts == running.attempts + 1
    assert again.worker == "w2"


def test_a_late_outcome_of_a_cancelled_run_is_dropped_and_ends_its_lease(store):
    add(store)
    running = claim_one(store)
    store.cancel(running.id)
    store.retry(running.id)
    applied, claimed = store.finish_and_claim(
        [Finish.done(running.lease_ref(), '"late"')],
        worker="w1",
        queues=None,
        limit=5,
        lease=LEASE,
    )
    assert applied == {}
    # the lease ended in the same transaction, but the claim saw the snapshot before it
    # (PostgreSQL) or after it (SQLite): either way the next claim has the job
    if not claimed:
        [claimed_job] = claim(store)
    else:
        [claimed_job] = claimed
    assert claimed_job.id == running.id and claimed_job.result is None


def test_a_late_failure_of_a_cancelled_run_changes_nothing_but_the_lease(store):
    add(store)
    running = claim_one(store)
    cancelled = store.cancel(running.id)
    assert store.fail(running.lease_ref(), "boom", retry_at=None) is None
    after = store.get_job(running.id)
    assert after.status == JobStatus.CANCELLED and after.last_error is None
    assert after.finished_at == cancelled.finished_at
    store.retry(running.id)
    assert [j.id for j in claim(store)] == [running.id]


def test_retry_after_cancel_runs_once_the_lease_of_a_dead_worker_expires(store):
    add(store)
    t0 = later(0)
    [running] = store.claim(worker="dead", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    store.cancel(running.id, now=t0)
    store.retry(running.id, now=t0)
    assert claim(store, now=t0 + timedelta(seconds=4)) == []
    [again] = claim(store, now=t0 + timedelta(seconds=6))
    assert again.id == running.id
    # the dead worker's fence is gone for good
    assert store.heartbeat([running.lease_ref()], lease=LEASE).lost == {running.id}
    assert store.finish_many([Finish.ended(running.lease_ref())]) == {}
    assert store.get_job(running.id).status == JobStatus.PROCESSING


def test_heartbeats_keep_a_cancelled_run_from_being_retried_beyond_its_first_lease(store):
    add(store)
    t0 = later(0)
    [running] = store.claim(worker="w1", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    store.cancel(running.id, now=t0)
    store.retry(running.id, now=t0)
    store.heartbeat(
        [running.lease_ref()], lease=timedelta(seconds=5), now=t0 + timedelta(seconds=4)
    )
    assert claim(store, now=t0 + timedelta(seconds=8)) == [], "renewed until t0 + 9"
    assert [j.id for j in claim(store, now=t0 + timedelta(seconds=10))] == [running.id]


def test_recovery_never_touches_a_cancelled_run(store):
    add(store)
    t0 = later(0)
    [running] = store.claim(worker="w1", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    store.cancel(running.id, now=t0)
    assert store.recover_expired(now=t0 + timedelta(seconds=60)).count == 0
    assert store.get_job(running.id).status == JobStatus.CANCELLED


def test_retry_of_a_running_job_is_refused(store):
    add(store)
    running = claim_one(store)
    with pytest.raises(InvalidTransition):
        store.retry(running.id)
    store.cancel(running.id)
    store.retry(running.id)
    with pytest.raises(InvalidTransition):
        store.retry(running.id)  # pending now
    store.cancel(running.id)
    store.retry(running.id)
    assert claim(store) == [], "cancel, retry, cancel, retry: the first run may still be going"
    store.finish_many([Finish.ended(running.lease_ref())])
    assert [j.id for j in claim(store)] == [running.id]


def test_shutdown_of_a_cancelled_run_whose_code_may_go_on_holds_it_until_then(store):
    add(store)
    running = claim_one(store)
    store.cancel(running.id)
    store.retry(running.id)
    t = later(0)
    # the job is no longer processing: nothing is handed back, but the lease ends at t + 2
    assert store.release([running.lease_ref()], now=t, not_before=t + timedelta(seconds=2)) == set()
    assert claim(store, now=t + timedelta(seconds=1)) == []
    assert [j.id for j in claim(store, now=t + timedelta(seconds=3))] == [running.id]


def test_an_ended_run_never_frees_a_job_that_is_still_processing(store):
    add(store)
    t0 = later(0)
    [running] = store.claim(worker="w1", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    assert store.finish_many([Finish.ended(running.lease_ref())], now=t0) == {}
    job = store.get_job(running.id)
    assert job.status == JobStatus.PROCESSING
    # its lease still runs, so it is recovered when it expires, as any other
    assert store.recover_expired(now=t0 + timedelta(seconds=6)).requeued == [running.id]


def test_pruning_a_cancelled_job_whose_run_goes_on_leaves_nothing_to_run(store):
    add(store)
    running = claim_one(store)
    newest = add(store)  # SQLite's prune keeps the newest row
    store.cancel(running.id)
    store.cancel(newest.id)
    assert store.prune(older_than=timedelta(0), now=later(1)) >= 1
    assert store.get_job(running.id) is None
    assert store.heartbeat([running.lease_ref()], lease=LEASE).lost == {running.id}
    assert claim(store) == []

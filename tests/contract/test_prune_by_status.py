"""Contract: pruning one status at a time, in bounded calls (what retention runs), on both
stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.jobs import Finish, JobStatus, utcnow
from conveyor.validation import job_filter, new_job
from tests.support.factories import LEASE, add, claim_one


def finished(store, status: JobStatus, n: int = 1) -> list[int]:
    """n jobs that end `status` now."""
    ids = []
    for _ in range(n):
        job = add(store)
        if status == JobStatus.CANCELLED:
            store.cancel(job.id)
        else:
            claimed = claim_one(store)
            if status == JobStatus.DONE:
                store.complete(claimed.lease_ref())
            else:
                store.fail(claimed.lease_ref(), "boom", retry_at=None)
        ids.append(job.id)
    return ids


def test_prune_of_one_status_leaves_the_others(store):
    done = finished(store, JobStatus.DONE, 2)
    failed = finished(store, JobStatus.FAILED, 2)
    cancelled = finished(store, JobStatus.CANCELLED, 2)
    add(store)  # the newest row stays pending (SQLite keeps its newest row anyway)
    later = utcnow() + timedelta(seconds=1)
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.FAILED) == 2
    assert all(store.get_job(i) is None for i in failed)
    assert all(store.get_job(i) is not None for i in done + cancelled)
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.CANCELLED) == 2
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.DONE) == 2
    assert store.stats() == {"default": {"pending": 1}}


def test_prune_with_a_limit_deletes_at_most_that_many_oldest_first(store):
    store.enqueue_many([new_job("t", i) for i in range(30)])
    jobs = store.claim(worker="w", queues=None, limit=30, lease=LEASE)
    t0 = utcnow()
    for i, job in enumerate(sorted(jobs, key=lambda j: j.id)):
        # finished one second apart, the lowest ids first
        store.finish_many([Finish.done(job.lease_ref())], now=t0 - timedelta(seconds=100 - i))
    add(store)
    later = utcnow() + timedelta(seconds=1)
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.DONE, limit=7) == 7
    left = {j.id for j in store.list_jobs(job_filter(status="done", limit=100))}
    assert len(left) == 23
    assert left == {j.id for j in jobs if j.id > min(j.id for j in jobs) + 6}, (
        "the oldest went first"
    )
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.DONE, limit=100) == 23


def test_prune_counts_only_jobs_past_their_age(store):
    old = finished(store, JobStatus.DONE)
    add(store)
    assert store.prune(older_than=timedelta(hours=1), status=JobStatus.DONE) == 0
    in_two_hours = utcnow() + timedelta(hours=2)
    assert store.prune(older_than=timedelta(hours=1), now=in_two_hours, status=JobStatus.DONE) == 1
    assert store.get_job(old[0]) is None


def test_prune_refuses_unfinished_statuses_and_a_limit_below_one(store):
    with pytest.raises(ValueError, match="only finished jobs"):
        store.prune(older_than=timedelta(0), status=JobStatus.PENDING)
    with pytest.raises(ValueError, match="limit"):
        store.prune(older_than=timedelta(0), limit=0)


def test_prune_takes_a_cancelled_job_whose_run_still_holds_its_lease(store):
    """Kept store semantics (docs/architecture.md, "A lease belongs to a run"): nothing can
    start a deleted job again, and the run's own writes then find no row."""
    job = add(store)
    claimed = claim_one(store)
    store.cancel(job.id)
    add(store)
    later = utcnow() + timedelta(seconds=1)
    assert store.prune(older_than=timedelta(0), now=later, status=JobStatus.CANCELLED) == 1
    renewal = store.heartbeat([claimed.lease_ref()], lease=LEASE)
    assert renewal.lost == {job.id}, "the run learns its job is gone and stops"
    assert store.finish_many([Finish.done(claimed.lease_ref())]) == {}

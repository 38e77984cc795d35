"""Contract: each start of a job is kept for its timeline (SPEC §9, the job page: created,
each start, finished), whatever sent the job back to pending between starts."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import Finish, JobStatus, utcnow
from tests.support.factories import LEASE, add, claim_one


def test_a_job_never_started_has_no_starts_and_no_job_has_none(store):
    job = add(store)
    assert store.starts(job.id) == []
    assert store.starts(job.id + 1000) is None


def test_every_start_is_kept_in_order_whatever_sent_the_job_back(store):
    job = add(store, max_attempts=5)
    t0 = utcnow()
    expired = (LEASE + timedelta(seconds=30)).total_seconds()  # after the third start
    times = [t0 + timedelta(seconds=s) for s in (0, 10, 20, 20 + expired, 40 + expired)]

    first = claim_one(store, now=times[0])
    store.finish_many([Finish.retry(first.lease_ref(), "boom", times[1])])  # a retry
    second = claim_one(store, now=times[1])
    assert store.starts(job.id) == times[:2]
    store.finish_many([Finish.snoozed(second.lease_ref(), times[2])])  # a snooze
    third = claim_one(store, now=times[2])
    # its lease expires: recovered
    assert store.recover_expired(now=times[3]).requeued == [job.id]
    fourth = claim_one(store, now=times[3])
    store.cancel(job.id)  # an operator cancels the run and retries the job
    store.finish_many([Finish.ended(fourth.lease_ref())])
    assert store.retry(job.id).status == JobStatus.PENDING
    last = claim_one(store, now=times[4])

    assert store.starts(job.id) == times
    assert store.get_job(job.id).started_at == times[-1] == last.started_at
    assert third.started_at == times[2]


def test_the_last_101_starts_are_kept(store):
    job = add(store, max_attempts=200)
    t0 = utcnow()
    times = [t0 + timedelta(seconds=n) for n in range(105)]
    for n, at in enumerate(times):
        claimed = claim_one(store, now=at)
        if n < len(times) - 1:
            store.finish_many([Finish.retry(claimed.lease_ref(), "again", times[n + 1])])
    assert store.starts(job.id) == times[-101:]

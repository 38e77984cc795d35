"""Contract: what the job context needs of a store (SPEC §6): progress written with lease
renewals, snoozes that give the attempt back, and a cancel signal for the running worker."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from conveyor.jobs import Finish, JobStatus
from conveyor.stores import open_store
from tests.support.factories import LEASE, add, claim_one, later


def test_progress_is_stored_with_a_renewal_and_cleared_by_the_next_claim(store):
    add(store, max_attempts=3)
    job = claim_one(store)
    renewal = store.heartbeat([job.lease_ref()], lease=LEASE, progress={job.id: (0.4, "40 %")})
    assert renewal.lost == set() and renewal.stop == set()
    stored = store.get_job(job.id)
    assert stored.progress == 0.4 and stored.progress_message == "40 %"
    assert stored.to_json()["progress"] == 0.4
    store.finish_many([Finish.retry(job.lease_ref(), "E", later(0))])
    again = claim_one(store, now=later(1))
    assert again.progress is None and again.progress_message is None


def test_a_renewal_without_progress_keeps_what_was_reported(store):
    add(store)
    add(store)
    job, other = claim_one(store), claim_one(store)
    store.heartbeat([job.lease_ref()], lease=LEASE, progress={job.id: (0.5, None)})
    store.heartbeat([job.lease_ref(), other.lease_ref()], lease=LEASE)
    assert store.get_job(job.id).progress == 0.5
    assert store.get_job(other.id).progress is None


def test_progress_of_a_cancelled_or_lost_run_is_not_written(store):
    add(store)
    job = claim_one(store)
    store.cancel(job.id)
    store.heartbeat([job.lease_ref()], lease=LEASE, progress={job.id: (0.9, "late")})
    assert store.get_job(job.id).progress is None


def test_a_snooze_gives_the_attempt_back_and_waits(store):
    add(store)
    job = claim_one(store)
    assert job.attempts == 1
    at = later(30)
    assert store.finish_many([Finish.snoozed(job.lease_ref(), at)]) == {job.id: JobStatus.PENDING}
    snoozed = store.get_job(job.id)
    assert snoozed.status == JobStatus.PENDING and snoozed.attempts == 0
    assert abs((snoozed.run_at - at).total_seconds()) < 0.001
    assert store.claim(worker="w", queues=None, limit=1, lease=LEASE, now=later(29)) == []
    [again] = store.claim(worker="w", queues=None, limit=1, lease=LEASE, now=later(31))
    assert again.attempts == 1


def test_cancelling_a_running_job_signals_the_notifier_within_a_second(store, store_url):
    add(store)
    running = claim_one(store)
    pending = add(store)
    heard: list[int | None] = []
    got = threading.Event()

    def listener(job_id: int | None) -> None:
        heard.append(job_id)
        got.set()

    async def scenario() -> None:
        notifier = store.notifier()
        notifier.add_cancel_listener(listener)
        await notifier.start()
        try:
            await asyncio.sleep(0.1)
            other = open_store(store_url)
            try:
                await asyncio.to_thread(other.cancel, pending.id)  # held by no run: no signal
                await asyncio.sleep(0.3)
                assert heard == []
                await asyncio.to_thread(other.cancel, running.id)
            finally:
                other.close()
            assert await asyncio.to_thread(got.wait, 1.0), "no cancel signal within 1 s"
        finally:
            await notifier.stop()

    asyncio.run(scenario())
    assert heard[0] in (running.id, None)  # PostgreSQL names the job; SQLite cannot


def test_heartbeat_with_progress_renews_the_lease_too(store):
    add(store)
    t0 = later(0)
    [job] = store.claim(worker="w", queues=None, limit=1, lease=timedelta(seconds=5), now=t0)
    store.heartbeat(
        [job.lease_ref()], lease=timedelta(seconds=5), progress={job.id: (1, None)}, now=later(4)
    )
    assert store.recover_expired(now=t0 + timedelta(seconds=7)).count == 0
    assert store.get_job(job.id).progress == 1.0

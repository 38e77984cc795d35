"""Contract: every claim keeps within the queue's settings (SPEC §7), on every store:
concurrency, a sliding-window rate limit, key_concurrency, fair turns across keys, pause and
a fleet-wide backoff; a limited queue never holds back the jobs of another."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import Finish, RateLimit, utcnow
from tests.support.factories import LEASE, add


def claim(store, limit: int = 10, now=None, queues=None):
    return store.claim(worker="w", queues=queues, limit=limit, lease=LEASE, now=now)


def test_concurrency_caps_the_running_jobs_of_a_queue_across_claims(store):
    store.configure_queue("q", concurrency=2)
    for _ in range(4):
        add(store, queue="q")
    other = add(store, queue="other")
    first = claim(store)
    assert sorted(j.queue for j in first) == ["other", "q", "q"]
    assert claim(store) == []  # two running: the queue is full, the other queue is empty
    done = next(j for j in first if j.queue == "q")
    store.complete(done.lease_ref())
    assert [j.queue for j in claim(store)] == ["q"]
    assert other.id in {j.id for j in first}


def test_a_rate_limit_counts_the_starts_of_a_sliding_window(store):
    store.configure_queue("q", rate_limit=RateLimit(2, 60))
    for _ in range(5):
        add(store, queue="q")
    t = utcnow()
    assert len(claim(store, now=t)) == 2
    assert claim(store, now=t + timedelta(seconds=30)) == []
    assert len(claim(store, now=t + timedelta(seconds=61))) == 2


def test_key_concurrency_caps_each_key_and_leaves_jobs_without_a_key_alone(store):
    store.configure_queue("q", key_concurrency=1)
    for key in ("a", "a", "b", None, None):
        add(store, queue="q", concurrency_key=key)
    running = claim(store)
    assert sorted(str(j.concurrency_key) for j in running) == ["None", "None", "a", "b"]
    assert claim(store) == []
    finishes = [Finish.done(j.lease_ref()) for j in running if j.concurrency_key == "a"]
    _, again = store.finish_and_claim(finishes, worker="w", queues=None, limit=5, lease=LEASE)
    assert [j.concurrency_key for j in again] == ["a"]


def test_a_fair_queue_rotates_across_keys(store):
    store.configure_queue("q", fair=True)
    for _ in range(20):
        add(store, queue="q", concurrency_key="big")
    add(store, queue="q", concurrency_key="small")
    first = claim(store, limit=2)
    assert sorted(j.concurrency_key for j in first) == ["big", "small"]


def test_pause_and_backoff_hold_a_queue_and_only_that_queue(store):
    add(store, queue="paused")
    add(store, queue="held")
    add(store, queue="open")
    store.pause_queue("paused")
    store.hold_queue("held", utcnow() + timedelta(minutes=5))
    assert [j.queue for j in claim(store)] == ["open"]
    store.resume_queue("paused")
    store.resume_queue("held")
    assert sorted(j.queue for j in claim(store)) == ["held", "paused"]

"""Contract: stats and pruning."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import utcnow
from tests.support.factories import LEASE, add


def test_stats_counts_by_queue_and_status(store):
    assert store.stats() == {}
    for queue in ("a", "a", "a", "b"):
        add(store, queue=queue)
    [job] = store.claim(worker="w", queues=["a"], limit=1, lease=LEASE)
    store.complete(job.lease_ref())
    store.claim(worker="w", queues=["a"], limit=1, lease=LEASE)
    assert store.stats() == {"a": {"done": 1, "processing": 1, "pending": 1}, "b": {"pending": 1}}


def test_prune_deletes_only_old_finished_jobs(store):
    keep_pending = add(store)
    done = add(store)
    cancelled = add(store)
    store.cancel(cancelled.id)
    [claimed] = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert claimed.id == keep_pending.id
    [claimed2] = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert claimed2.id == done.id
    store.complete(claimed2.lease_ref())
    newest = add(store)  # stays pending (SQLite keeps its newest row anyway, see tests/sqlite)
    assert store.prune(older_than=timedelta(days=1)) == 0  # too recent
    assert store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1)) == 2
    assert store.get_job(done.id) is None and store.get_job(cancelled.id) is None
    assert store.get_job(keep_pending.id) is not None and store.get_job(newest.id) is not None


def test_ids_are_not_reused_after_prune(store):
    job = add(store)
    store.cancel(job.id)
    store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1))
    assert add(store).id > job.id


def test_prune_many_in_batches(store):
    from conveyor.validation import new_job

    store.enqueue_many([new_job("t", i) for i in range(120)])
    for job in store.claim(worker="w", queues=None, limit=120, lease=LEASE):
        store.complete(job.lease_ref())
    add(store)  # the newest row stays pending
    assert store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1)) == 120
    assert store.stats() == {"default": {"pending": 1}}

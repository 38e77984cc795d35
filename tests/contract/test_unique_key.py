"""Contract: at most one unfinished job per unique_key."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidTransition
from conveyor.jobs import JobFilter
from conveyor.validation import new_job
from tests.support.factories import claim_one


def enqueue(store, key, payload=None):
    return store.enqueue(new_job("t", payload, unique_key=key))


def test_second_enqueue_returns_the_unfinished_holder(store):
    first = enqueue(store, "ORD-1", 1)
    second = enqueue(store, "ORD-1", 2)
    assert first.created and not second.created
    assert second.job.id == first.job.id and second.job.payload == 1
    assert len(store.list_jobs(JobFilter())) == 1


def test_processing_job_still_holds_the_key(store):
    first = enqueue(store, "K")
    claim_one(store)
    again = enqueue(store, "K")
    assert not again.created and again.job.id == first.job.id


def test_finished_job_frees_the_key(store):
    first = enqueue(store, "K")
    job = claim_one(store)
    store.complete(job.lease_ref())
    again = enqueue(store, "K")
    assert again.created and again.job.id != first.job.id


def test_different_keys_and_null_keys_do_not_collide(store):
    assert enqueue(store, "A").created and enqueue(store, "B").created
    assert enqueue(store, None).created and enqueue(store, None).created


def test_enqueue_many_with_duplicate_keys(store):
    existing = enqueue(store, "X").job
    results = store.enqueue_many(
        [
            new_job("t", 1, unique_key="X"),
            new_job("t", 2, unique_key="Y"),
            new_job("t", 3, unique_key="Y"),
        ]
    )
    assert [r.created for r in results] == [False, True, False]
    assert results[0].job.id == existing.id
    assert results[1].job.id == results[2].job.id


def test_retry_refused_while_another_job_holds_the_key(store):
    first = enqueue(store, "K").job
    store.cancel(first.id)
    enqueue(store, "K")  # a new unfinished holder
    with pytest.raises(InvalidTransition):
        store.retry(first.id)

"""Contract: enqueue and read back (every store)."""

from __future__ import annotations

from datetime import timedelta

from conveyor.jobs import JobFilter, JobStatus, utcnow
from conveyor.validation import new_job
from tests.support.factories import add


def test_enqueue_returns_a_pending_job_with_defaults(store):
    job = add(store, "reverse", "hello")
    assert job.id > 0
    assert (job.type, job.queue, job.payload, job.priority) == ("reverse", "default", "hello", 0)
    assert job.status == JobStatus.PENDING and job.status == "pending"
    assert (job.attempts, job.max_attempts) == (0, 5)
    assert job.result is None and job.last_error is None and job.worker is None
    assert job.created_at.tzinfo is not None
    assert job.started_at is None and job.finished_at is None


def test_get_job_round_trips_every_field(store):
    job = add(
        store,
        "payment",
        {"order_id": "A", "amount": 5, "nested": [1, None, "é"]},
        queue="payments",
        priority=-7,
        max_attempts=9,
    )
    again = store.get_job(job.id)
    assert again is not None
    assert again.to_json() == job.to_json()


def test_ids_increase(store):
    ids = [add(store).id for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_get_missing_job_is_none(store):
    assert store.get_job(123456) is None


def test_timestamps_keep_microseconds(store):
    at = (utcnow() + timedelta(days=1)).replace(microsecond=123456)
    job = add(store, run_at=at)
    stored = store.get_job(job.id)
    assert stored is not None and stored.run_at == at


def test_delay_sets_run_at_in_the_future(store):
    before = utcnow()
    job = add(store, delay=60)
    assert job.run_at >= before + timedelta(seconds=59)


def test_enqueue_many_returns_jobs_in_input_order(store):
    jobs = [
        new_job("t", i, priority=i % 3, queue=f"q{i % 4}", delay=60 if i % 5 == 0 else None)
        for i in range(50)
    ]
    results = store.enqueue_many(jobs)
    assert [r.job.payload for r in results] == list(range(50))
    assert all(r.created for r in results)
    # each returned Job is the row the store holds under its id
    for result in results:
        assert store.get_job(result.job.id) == result.job
    assert len(store.list_jobs(JobFilter(limit=1000))) == 50


def test_enqueue_many_empty_is_a_no_op(store):
    assert store.enqueue_many([]) == []


def test_list_jobs_newest_first_with_filters_and_pagination(store):
    for i in range(10):
        add(store, "a" if i % 2 else "b", i, queue="q1" if i < 5 else "q2")
    everything = store.list_jobs(JobFilter(limit=100))
    assert [j.payload for j in everything] == list(range(9, -1, -1))
    assert {j.type for j in store.list_jobs(JobFilter(type="a"))} == {"a"}
    assert [j.payload for j in store.list_jobs(JobFilter(queue="q1", type="b"))] == [4, 2, 0]
    page1 = store.list_jobs(JobFilter(limit=4))
    page2 = store.list_jobs(JobFilter(limit=4, before_id=page1[-1].id))
    assert [j.payload for j in page1 + page2] == list(range(9, 1, -1))
    assert store.list_jobs(JobFilter(status=JobStatus.DONE)) == []


def test_payload_kinds_round_trip(store):
    for payload in [
        None,
        0,
        -1.5,
        True,
        "",
        "x" * 10_000,
        [1, [2, [3]]],
        {"a": {"b": None}},
        "'; DROP TABLE jobs; --",
        "ünïcødé ✓ 𝄞",
    ]:
        job = add(store, payload=payload)
        got = store.get_job(job.id)
        assert got is not None and got.payload == payload

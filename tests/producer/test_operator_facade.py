"""The operator actions on the `Conveyor` facade (list_jobs, get_job, cancel, retry, stats,
prune, ping), on both stores: what the HTTP API, the dashboard and the CLI call. Filters and
ids are checked by the facade with the same rules and messages on every store, so a value
no store could hold is InvalidJob (or an absent job), never a driver error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidJob, InvalidTransition, JobNotFound
from conveyor.jobs import ID_MAX, LIST_LIMIT_MAX, NAME_MAX, Finish, JobStatus
from tests.support.factories import LEASE


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    app = Conveyor(store_url)
    yield app
    app.close()


def fail_for_good(app: Conveyor, job_id: int) -> None:
    """Claim the job and fail it without a retry (through the store, as a worker would)."""
    claimed = app.store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert [job.id for job in claimed] == [job_id]
    app.store.finish_many([Finish.failed(claimed[0].lease_ref(), "ValueError: boom")])


def test_list_jobs_newest_first_with_filters_and_pages(app):
    made = [app.enqueue("a" if n % 2 else "b", n, queue="q1" if n % 3 else "q2") for n in range(10)]
    ids = [job.id for job in reversed(made)]
    assert [job.id for job in app.list_jobs()] == ids
    assert [job.id for job in app.list_jobs(limit=3)] == ids[:3]
    assert [job.id for job in app.list_jobs(limit=3, before_id=ids[2])] == ids[3:6]
    assert {job.type for job in app.list_jobs(type="a")} == {"a"}
    assert [job.payload for job in app.list_jobs(queue="q2", type="b")] == [6, 0]
    app.cancel(made[0].id)
    # a status as the enum or as its value, as the CLI and the HTTP API pass it
    assert [job.id for job in app.list_jobs(status=JobStatus.CANCELLED)] == [made[0].id]
    assert [job.id for job in app.list_jobs(status="cancelled")] == [made[0].id]
    assert len(app.list_jobs(status="pending", limit=LIST_LIMIT_MAX)) == 9


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"type": "t" * (NAME_MAX + 1)}, f"type must be 1 to {NAME_MAX} characters, got 201"),
        ({"queue": ""}, f"queue must be 1 to {NAME_MAX} characters, got 0"),
        ({"type": "a\x00b"}, "type must not contain NUL characters"),
        ({"queue": "\ud800"}, "queue is not valid unicode"),
        ({"before_id": 2**70}, f"before_id must be between 1 and {ID_MAX}, got {2**70}"),
        ({"before_id": 0}, f"before_id must be between 1 and {ID_MAX}, got 0"),
        ({"limit": 0}, f"limit must be between 1 and {LIST_LIMIT_MAX}, got 0"),
        ({"limit": LIST_LIMIT_MAX + 1}, f"limit must be between 1 and {LIST_LIMIT_MAX}, got 1001"),
        ({"limit": True}, "limit must be an integer"),
        ({"status": "finished"}, "status must be one of pending, processing, done, failed"),
    ],
)
def test_list_jobs_refuses_filters_no_job_could_match(app, filters, message):
    app.enqueue("t")
    with pytest.raises(InvalidJob) as refused:
        app.list_jobs(**filters)
    assert str(refused.value).startswith(message)


def test_cancel_and_retry_move_the_job_and_refuse_other_statuses(app):
    job = app.enqueue("t", {"n": 1})
    cancelled = app.cancel(job.id)
    assert (cancelled.id, cancelled.status) == (job.id, JobStatus.CANCELLED)
    assert cancelled.finished_at is not None
    with pytest.raises(InvalidTransition):
        app.cancel(job.id)
    retried = app.retry(job.id)
    assert (retried.status, retried.finished_at, retried.payload) == (
        JobStatus.PENDING,
        None,
        {"n": 1},
    )
    with pytest.raises(InvalidTransition):
        app.retry(job.id)  # pending: nothing to retry
    assert app.get_job(job.id) == retried


def test_retry_of_a_failed_job_keeps_attempts_and_allows_one_more(app):
    job = app.enqueue("t", max_attempts=1)
    fail_for_good(app, job.id)
    failed = app.get_job(job.id)
    assert failed is not None and (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    retried = app.retry(job.id)
    assert (retried.status, retried.attempts, retried.max_attempts) == (JobStatus.PENDING, 1, 2)


@pytest.mark.parametrize("job_id", [999_999, 0, -5, ID_MAX, ID_MAX + 1, 2**70])
def test_absent_ids_are_not_found_on_every_store(app, job_id):
    app.enqueue("t")
    assert app.get_job(job_id) is None
    for action in (app.cancel, app.retry):
        with pytest.raises(JobNotFound, match=f"^job {job_id} not found$"):
            action(job_id)


def test_stats_counts_by_queue_and_status(app):
    assert app.stats() == {}
    app.enqueue("t", queue="q1")
    app.enqueue("t", queue="q1")
    other = app.enqueue("t", queue="q2")
    app.cancel(other.id)
    assert app.stats() == {"q1": {"pending": 2}, "q2": {"cancelled": 1}}


def test_prune_deletes_finished_jobs_past_retention_only(app):
    finished = app.enqueue("t")
    app.cancel(finished.id)
    kept = app.enqueue("t")  # unfinished: never pruned (and SQLite keeps the newest row)
    assert app.prune(older_than=timedelta(days=1)) == 0
    assert app.prune(older_than=timedelta(0)) == 1
    assert app.get_job(finished.id) is None
    assert app.get_job(kept.id) == kept


@pytest.mark.parametrize(
    "older_than", [timedelta(seconds=-1), timedelta(days=36501), 7, "7d", None]
)
def test_prune_refuses_a_retention_outside_0_to_100_years(app, older_than):
    job = app.enqueue("t")
    app.cancel(job.id)
    app.enqueue("t")
    with pytest.raises(InvalidJob, match="older_than must be"):
        app.prune(older_than=older_than)
    assert app.prune(older_than=timedelta(days=36500)) == 0, "the limit itself is taken"
    assert app.get_job(job.id) is not None, "nothing deleted"


def test_ping_answers_on_a_reachable_store(app):
    app.ping()

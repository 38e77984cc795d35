"""The finishing statements count their own outcomes into job_counts and job_minutes, and tell
the trigger jobs_count_updated to skip them (migration 0017): the counts stay what a recount
of the jobs table gives, and what the trigger alone would have written (a shadow copy of it
writes its own tables here), for every kind of outcome, on the direct and the pooled store,
with a failed dependency's cascade counted by the trigger as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from conveyor.jobs import Finish, JobStatus, LeaseRef, utcnow
from conveyor.stores.postgres.store import PostgresStore, Q
from conveyor.validation import new_job
from tests.support.factories import add

pytestmark = pytest.mark.postgres

LEASE = timedelta(seconds=30)

# The trigger's body as migration 0015 has it, without the flag, into tables of its own.
SHADOW = """
CREATE TABLE shadow_counts (queue text, status text, n bigint);
CREATE TABLE shadow_minutes (minute timestamptz, queue text, wait_bucket int, run_bucket int,
                             finished int, failed int, retried int);
CREATE FUNCTION shadow_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.queue, o.status AS was, n.status AS now_status,
               o.status = 'processing'
                 AND (n.status IN ('done', 'failed')
                      OR (n.status = 'pending' AND n.attempts = o.attempts)) AS ended,
               o.run_at, o.started_at, n.updated_at
        FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status <> o.status
    ),
    counted AS (
        INSERT INTO shadow_counts
        SELECT queue, now_status, 1 FROM changed
        WHERE now_status IN ('done', 'failed', 'cancelled')
        UNION ALL
        SELECT queue, was, -1 FROM changed WHERE was IN ('done', 'failed', 'cancelled')
    )
    INSERT INTO shadow_minutes
    SELECT date_trunc('minute', updated_at), queue,
           conveyor_bucket(extract(epoch FROM started_at - run_at)),
           conveyor_bucket(extract(epoch FROM updated_at - started_at)),
           (now_status = 'done')::int, (now_status = 'failed')::int,
           (now_status = 'pending')::int
    FROM changed WHERE ended;
    RETURN NULL;
END
$$;
CREATE TRIGGER shadow_count_updated AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION shadow_count_updated();
"""

UNSHADOW = """
DROP TRIGGER IF EXISTS shadow_count_updated ON jobs;
DROP FUNCTION IF EXISTS shadow_count_updated();
DROP TABLE IF EXISTS shadow_counts, shadow_minutes;
"""


@pytest.fixture
def shadowed(admin: psycopg.Connection) -> Iterator[psycopg.Connection]:
    admin.execute(UNSHADOW)
    admin.execute(SHADOW)
    try:
        yield admin
    finally:
        admin.execute(UNSHADOW)


@pytest.fixture(params=["direct", "pooled"])
def store(request: pytest.FixtureRequest, pg_url: str) -> Iterator[PostgresStore]:
    if request.param == "pooled":
        s = PostgresStore(f"{pg_url}?pooler=transaction", listen_url=pg_url)
    else:
        s = PostgresStore(pg_url)
    yield s
    s.close()


def _counts(admin: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = admin.execute(
        "SELECT queue, status, sum(n)::bigint FROM job_counts GROUP BY 1, 2 HAVING sum(n) <> 0"
    ).fetchall()
    return {(q, s): n for q, s, n in rows}


def _recount(admin: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = admin.execute(
        "SELECT queue, status, count(*) FROM jobs"
        " WHERE status IN ('done', 'failed', 'cancelled') GROUP BY 1, 2"
    ).fetchall()
    return {(q, s): n for q, s, n in rows}


def _shadow_counts(admin: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = admin.execute(
        "SELECT queue, status, sum(n)::bigint FROM shadow_counts GROUP BY 1, 2 HAVING sum(n) <> 0"
    ).fetchall()
    return {(q, s): n for q, s, n in rows}


def _minutes(admin: psycopg.Connection, table: str) -> dict[tuple[object, ...], tuple[int, ...]]:
    rows = admin.execute(
        f"SELECT minute, queue, wait_bucket, run_bucket,"  # noqa: S608 (a constant table name)
        f" sum(finished)::int, sum(failed)::int, sum(retried)::int FROM {table}"
        " GROUP BY 1, 2, 3, 4"
    ).fetchall()
    return {tuple(row[:4]): tuple(row[4:]) for row in rows}


def _assert_exact(admin: psycopg.Connection) -> dict[tuple[str, str], int]:
    counts = _counts(admin)
    assert counts == _recount(admin)
    assert counts == _shadow_counts(admin)
    assert _minutes(admin, "job_minutes") == _minutes(admin, "shadow_minutes")
    return counts


def _claim(store: PostgresStore, n: int, queues: list[str] | None = None) -> list[LeaseRef]:
    jobs = store.claim(worker="w", queues=queues, limit=n, lease=LEASE)
    assert len(jobs) == n
    return [job.lease_ref() for job in jobs]


def _totals(admin: psycopg.Connection) -> tuple[int, int, int]:
    row = admin.execute(
        "SELECT coalesce(sum(finished), 0)::int, coalesce(sum(failed), 0)::int,"
        " coalesce(sum(retried), 0)::int FROM job_minutes"
    ).fetchone()
    assert row is not None
    return row


def test_every_kind_of_finish_counts_as_the_trigger_would(store, shadowed):
    admin = shadowed
    store.enqueue_many([new_job("t", None, queue="a") for _ in range(8)])
    store.enqueue_many([new_job("t", None, queue="b") for _ in range(4)])
    done, failed, retried, snoozed, stale, dropped, ended, more = _claim(store, 8, ["a"])
    store.cancel(dropped.job_id)  # an operator's cancels: their outcomes no longer apply
    store.cancel(ended.job_id)
    soon = utcnow() - timedelta(seconds=1)  # due again at once
    applied = store.finish_many(
        [
            Finish.done(done),
            Finish.failed(failed, "boom"),
            Finish.retry(retried, "again", soon),
            Finish.snoozed(snoozed, soon),
            Finish.done(LeaseRef(stale.job_id, "w", stale.attempt + 1)),  # fenced: no row
            Finish.done(dropped),
            Finish.ended(ended),
        ]
    )
    assert applied == {
        done.job_id: JobStatus.DONE,
        failed.job_id: JobStatus.FAILED,
        retried.job_id: JobStatus.PENDING,
        snoozed.job_id: JobStatus.PENDING,
    }
    assert _assert_exact(admin) == {("a", "done"): 1, ("a", "failed"): 1, ("a", "cancelled"): 2}
    assert _totals(admin) == (1, 1, 1)

    # finish_and_claim: the stale run's and `more`'s outcomes, claiming b's jobs
    applied, claimed = store.finish_and_claim(
        [Finish.failed(stale, "late"), Finish.retry(more, "again", soon)],
        worker="w",
        queues=None,
        limit=20,
        lease=LEASE,
    )
    assert applied == {stale.job_id: JobStatus.FAILED, more.job_id: JobStatus.PENDING}
    _assert_exact(admin)
    # ... and from named queues, ending every run it claimed
    refs = [job.lease_ref() for job in claimed]
    applied, _ = store.finish_and_claim(
        [Finish.done(ref) for ref in refs], worker="w", queues=["a"], limit=5, lease=LEASE
    )
    assert set(applied.values()) == {JobStatus.DONE}
    counts = _assert_exact(admin)
    assert counts[("a", "failed")] == 2
    assert sum(_totals(admin)) == 2 + 2 + 1 + len(refs)


def test_a_failed_dependencys_cascade_is_counted(store, shadowed):
    admin = shadowed
    parent = add(store, queue="a")
    child = add(store, queue="b", depends_on=[parent.id], on_dependency_failure="cancel")
    add(store, queue="c", depends_on=[child.id], on_dependency_failure="cancel")
    other = add(store, queue="a")
    add(store, queue="b", depends_on=[other.id])  # released when `other` is done
    refs = _claim(store, 2)
    applied, claimed = store.finish_and_claim(
        [Finish.failed(refs[0], "boom"), Finish.done(refs[1])],
        worker="w",
        queues=None,
        limit=5,
        lease=LEASE,
    )
    assert sorted(applied.values()) == [JobStatus.DONE, JobStatus.FAILED]
    assert claimed == []  # the released dependent is due from the next statement's snapshot
    counts = _assert_exact(admin)
    assert counts == {
        ("a", "done"): 1,
        ("a", "failed"): 1,
        ("b", "cancelled"): 1,
        ("c", "cancelled"): 1,
    }
    assert store.finish_many([Finish.failed(_claim(store, 1)[0], "x")])
    _assert_exact(admin)


def test_a_limited_queue_counts_as_the_others(store, shadowed):
    admin = shadowed
    store.configure_queue("r", concurrency=3)  # claims go through finish_and_claim_restricted
    store.enqueue_many([new_job("t", None, queue="r") for _ in range(6)])
    refs = _claim(store, 3)
    for _ in range(2):
        applied, claimed = store.finish_and_claim(
            [Finish.done(ref) for ref in refs], worker="w", queues=None, limit=3, lease=LEASE
        )
        assert set(applied.values()) == {JobStatus.DONE}
        refs = [job.lease_ref() for job in claimed]
    assert _assert_exact(admin) == {("r", "done"): 6}
    assert _totals(admin) == (6, 0, 0)


def test_the_trigger_counts_the_next_statement_of_the_transaction(pg_url, shadowed):
    # the flag a finish sets is cleared by its own statement's trigger, so a later update in
    # the same transaction is counted by the trigger again
    admin = shadowed
    store = PostgresStore(pg_url)
    try:
        store.enqueue_many([new_job("t", None, queue="a") for _ in range(2)])
        ref = _claim(store, 1)[0]
        rows = [[ref.job_id, ref.worker, ref.attempt, "null", None, None, "done"]]
        with psycopg.connect(pg_url) as conn:  # one transaction, committed on exit
            finished = conn.execute(
                Q["finish_many"],
                {"outcomes": json.dumps(rows), "ids": [ref.job_id], "wake": [], "now": None},
            ).fetchall()
            assert [row[1] for row in finished] == ["done"]
            flag = conn.execute("SELECT current_setting('conveyor.counted', true)").fetchone()
            assert flag == ("",)
            conn.execute("UPDATE jobs SET status = 'cancelled' WHERE status = 'pending'")
        assert _assert_exact(admin) == {("a", "done"): 1, ("a", "cancelled"): 1}
    finally:
        store.close()

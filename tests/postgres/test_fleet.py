"""PostgreSQL's fleet observability (SPEC §9): counts sharded by session so that concurrent
finishers never wait for one another, folded when their sessions are gone; and the dashboard's
queries read indexes and small tables, never every job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.jobs import utcnow
from conveyor.stores.postgres.store import PostgresStore, Q
from conveyor.validation import new_job
from tests.support import pg

pytestmark = pytest.mark.postgres


def _finish_all(store: PostgresStore, n: int, queue: str) -> None:
    store.enqueue_many([new_job("t", None, queue=queue) for _ in range(n)])
    for job in store.claim(worker="w", queues=[queue], limit=n, lease=timedelta(seconds=30)):
        assert store.complete(job.lease_ref())


def test_counts_of_sessions_that_are_gone_fold_into_one_row(pg_url, pg_store, admin):
    for _ in range(2):  # two stores: their own sessions, their own shards
        other = PostgresStore(pg_url)
        _finish_all(other, 5, "a")
        other.close()
    _finish_all(pg_store, 3, "a")
    shards = admin.execute("SELECT count(*) FROM job_counts WHERE status = 'done'").fetchone()
    assert shards is not None and shards[0] >= 3
    assert pg_store.stats() == {"a": {"done": 13}}

    pg_store.compact_stats(keep=timedelta(hours=6))
    rows = admin.execute("SELECT shard, n FROM job_counts WHERE status = 'done'").fetchall()
    live = {pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity").fetchall()}
    assert all(shard == 0 or shard in live for shard, _ in rows), rows
    assert (0, 10) in rows, "the gone sessions' 10 jobs, in shard 0"
    assert pg_store.stats() == {"a": {"done": 13}}


@pytest.fixture(scope="module")
def large() -> Iterator[str]:
    """A database of many finished jobs and a few pending and processing ones, analysed."""
    pg.require_postgres()
    url = pg.create_database()
    with Conveyor(url) as app:
        app.store.migrate()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (type, queue, payload, status, run_at, created_at, updated_at,"
            " started_at, finished_at, worker, lease_expires_at)"
            " SELECT 't', 'q' || mod(i, 3), 'null',"
            "   CASE WHEN i <= 49000 THEN 'done' WHEN i <= 49500 THEN 'failed'"
            "        WHEN i <= 49900 THEN 'pending' ELSE 'processing' END,"
            "   now() - interval '1 minute', now(), now(), now(),"
            "   CASE WHEN i <= 49500 THEN now() END,"
            "   CASE WHEN i > 49900 THEN 'w' END,"
            "   CASE WHEN i > 49900 THEN now() + interval '1 minute' END"
            " FROM generate_series(1, 50000) AS i"
        )
        conn.execute("ANALYZE")
    yield url
    pg.drop_database(url)


DASHBOARD_QUERIES = {
    "stats": {},
    "oldest_pending": {"now": None},
    "minute_stats": {"since": utcnow() - timedelta(hours=1)},
    "list_workers": {"now": None},
    "list_jobs": {"status": None, "type": None, "queue": None, "before_id": None, "limit": 50},
    "list_jobs failed": {
        "status": "failed",
        "type": None,
        "queue": None,
        "before_id": None,
        "limit": 50,
    },
}


@pytest.mark.parametrize("name", list(DASHBOARD_QUERIES))
def test_dashboard_queries_read_indexes_not_every_job(large, name):
    params = DASHBOARD_QUERIES[name]
    with psycopg.connect(large) as conn:
        rows = conn.execute(f"EXPLAIN {Q[name.split()[0]]}", params).fetchall()
    plan = "\n".join(row[0] for row in rows)
    assert "Seq Scan on jobs" not in plan, plan
    if name in ("stats", "oldest_pending"):
        assert "jobs_pending" in plan, plan
    if name == "stats":
        assert "jobs_processing" in plan, plan


def test_counts_match_the_jobs_inserted_by_one_statement(large):
    with Conveyor(large) as app:
        assert app.stats() == {
            f"q{q}": {
                "done": len([i for i in range(1, 49001) if i % 3 == q]),
                "failed": len([i for i in range(49001, 49501) if i % 3 == q]),
                "pending": len([i for i in range(49501, 49901) if i % 3 == q]),
                "processing": len([i for i in range(49901, 50001) if i % 3 == q]),
            }
            for q in range(3)
        }

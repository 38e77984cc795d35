"""Finish notifications (conveyor_finished) are sent only while some session waits for
results: a NOTIFY serialises the commits of concurrent finishers, so workers must not pay
for it when nobody listens (migration 0009, finish_listeners)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from conveyor.jobs import Finish
from conveyor.stores.postgres.finish_listener import PostgresFinishListener
from conveyor.stores.postgres.store import PostgresStore
from conveyor.validation import new_job

pytestmark = pytest.mark.postgres

LEASE = timedelta(seconds=30)


def finish_one(store: PostgresStore) -> int:
    store.enqueue(new_job("t"))
    (job,) = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    store.finish_many([Finish.done(job.lease_ref(), "null")])
    return job.id


def heard(conn: psycopg.Connection, timeout: float = 0.5) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout) if n.channel == "conveyor_finished"]


def test_finishes_notify_only_while_a_listener_is_registered(pg_store, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as spy:
        spy.execute("LISTEN conveyor_finished")  # hears, but is not a registered listener
        finish_one(pg_store)
        assert heard(spy) == []
        listener = PostgresFinishListener(pg_url, where="test")
        listener.connect()
        try:
            job_id = finish_one(pg_store)
            assert heard(spy) == [str(job_id)]
        finally:
            listener.close()
        finish_one(pg_store)
        assert heard(spy) == []  # the listener's row went with it


def test_a_killed_listeners_row_is_removed_by_the_reaper(pg_store, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as doomed:
        doomed.execute("INSERT INTO finish_listeners (pid) VALUES (pg_backend_pid())")
    # its session is gone without deleting its row (as a killed process leaves it)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM finish_listeners").fetchone() == (1,)
        pg_store.recover_expired()
        assert conn.execute("SELECT count(*) FROM finish_listeners").fetchone() == (0,)

"""PostgreSQL through PgBouncer in transaction mode (SPEC §10): real `conveyor worker`
processes whose every statement goes through the pooler, with wake-ups over
LISTEN_DATABASE_URL (a direct connection) or, without it, by polling."""

from __future__ import annotations

import collections
import time

import pytest

from conveyor import Conveyor
from conveyor.stores.postgres.store import PostgresStore
from tests.api.servers import ThreadedApi, api_settings
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.postgres]

LISTENER = "conveyor-test-direct"  # the application_name of the direct LISTEN sessions


def done(app: Conveyor) -> int:
    return sum(q.get("done", 0) for q in app.store.stats().values())


def listen_url(pg_url: str) -> str:
    return f"{pg_url}?application_name={LISTENER}"


def test_two_workers_through_pgbouncer_run_3000_jobs_exactly_once_and_wake_up(
    workers, bouncer, pg_url, admin
):
    # DATABASE_URL names the pooler undeclared: LISTEN_DATABASE_URL says it is one.
    workers.url = bouncer.url(pg_url)
    env = {"LISTEN_DATABASE_URL": listen_url(pg_url)}
    with Conveyor(workers.url, listen_database_url=listen_url(pg_url)) as producer:
        for start in range(0, 3000, 500):
            producer.enqueue_many(
                [{"type": "record", "payload": {"seq": i}} for i in range(start, start + 500)]
            )
        for _ in range(2):
            workers.start("--workers", "8", "--fetch-interval", "10", env=env)
        wait_until(lambda: done(producer) == 3000, timeout=60, message="all 3000 jobs done")
        seqs = collections.Counter(workers.records.seqs())
        assert len(seqs) == 3000 and set(seqs.values()) == {1}, "each job ran exactly once"
        assert len({line[1] for line in workers.records.finished()}) == 2, "both took part"

        for n in range(2):
            wait_until(lambda n=n: "wake-ups: LISTEN at" in workers.log(n), timeout=5)
        listening = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND query LIKE 'LISTEN%%'",
            (LISTENER,),
        ).fetchone()
        assert listening == (2,), "each worker LISTENs on the direct connection"

        # Idle workers, a 10 s fetch interval: only the notification starts the job soon.
        enqueued = time.time()
        producer.enqueue("record", {"seq": "wake"})
        line = wait_until(
            lambda: next((ln for ln in workers.records.finished() if ln[0] == "wake"), None),
            timeout=10,
        )
        assert float(line[2]) - enqueued < 1.0, "woken, not polled"


def test_without_listen_url_workers_poll_through_the_pooler_and_say_so(workers, pooled_url):
    proc = workers.start("--workers", "2")  # the default poll interval
    wait_until(lambda: "polling every 0.5s" in workers.log(0), timeout=10, message="start log")
    with Conveyor(pooled_url) as producer:
        producer.enqueue_many([{"type": "record", "payload": {"seq": i}} for i in range(50)])
        wait_until(lambda: done(producer) == 50, timeout=20, message="50 jobs done")
        enqueued = time.time()
        producer.enqueue("record", {"seq": "polled"})
        line = wait_until(
            lambda: next((ln for ln in workers.records.finished() if ln[0] == "polled"), None),
            timeout=10,
        )
    assert float(line[2]) - enqueued < 2.0, "picked up by the next 0.5 s poll"
    assert sorted(collections.Counter(workers.records.seqs()).values()) == [1] * 51
    assert proc.poll() is None


def test_wait_through_pgbouncer_hears_finishes_on_the_listen_connection(
    workers, bouncer, pg_url, admin
):
    workers.url = bouncer.url(pg_url)
    workers.start("--workers", "2", env={"LISTEN_DATABASE_URL": pg_url})
    with Conveyor(workers.url, listen_database_url=listen_url(pg_url)) as app:
        job = app.enqueue("record", {"seq": 1})
        finished = app.wait(job.id, timeout=10)
        assert finished.status == "done" and finished.result == 1
        waiters = admin.execute(
            "SELECT a.application_name FROM finish_listeners AS f"
            " JOIN pg_stat_activity AS a ON a.pid = f.pid"
        ).fetchall()
        assert waiters == [(LISTENER,)], "the waiter listens on the direct connection"
        # GET /jobs/{id}?wait through the same app, as `conveyor serve` runs it
        second = app.enqueue("record", {"seq": 2})
        with ThreadedApi(app, api_settings()) as api, api.client() as client:
            response = client.get(f"/jobs/{second.id}", params={"wait": 10})
        assert response.status_code == 200 and response.json()["status"] == "done"


def test_pooled_runtime_statements_set_their_plan_settings_per_statement(pooled_url):
    store = PostgresStore(pooled_url)
    show = "SELECT current_setting('enable_seqscan') AS seqscan"
    try:
        runtime = [store._runtime.run(lambda cur: cur.execute(show).fetchone()) for _ in range(3)]
        client = [store._client.run(lambda cur: cur.execute(show).fetchone()) for _ in range(3)]
        # the setting ends with its statement: a plain statement on the runtime's
        # connection sees the server's default again
        after = store._runtime.run(lambda cur: cur.connection.execute(show).fetchone())
    finally:
        store.close()
    assert runtime == [{"seqscan": "off"}] * 3
    assert client == [{"seqscan": "on"}] * 3
    assert after == ("on",)
    assert store.listens is False

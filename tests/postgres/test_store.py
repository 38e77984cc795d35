"""PostgreSQL-specific store behaviour: the claim's plan, SKIP LOCKED under concurrency,
connection budget, surviving terminated connections, URL errors, concurrent migrations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import psycopg
import pytest

from conveyor.errors import ConfigurationError, StoreUnavailable
from conveyor.jobs import Finish, JobFilter, JobStatus, utcnow
from conveyor.stores import open_store
from conveyor.stores.postgres.store import MIGRATIONS, POOL_MAX_SIZE, PostgresStore, Q
from conveyor.validation import new_job
from tests.postgres.conftest import backends, terminate
from tests.support import pg
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

LEASE = timedelta(seconds=30)


def run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


# -- the claim ------------------------------------------------------------------------------
def _fill(admin: psycopg.Connection, pending: int, done: int) -> None:
    admin.execute(
        "INSERT INTO jobs (type, queue, payload, priority, status, run_at, created_at,"
        " updated_at, finished_at)"
        " SELECT 't', 'q' || mod(i, 5), to_jsonb(i), mod(i, 7)::smallint,"
        " CASE WHEN i <= %(done)s THEN 'done' ELSE 'pending' END,"
        " now() - interval '1 minute', now(), now(),"
        " CASE WHEN i <= %(done)s THEN now() END"
        " FROM generate_series(1, %(total)s) AS i",
        {"done": done, "total": pending + done},
    )
    admin.execute("ANALYZE jobs")


def _plan(admin: psycopg.Connection, query: str, params: Mapping[str, object]) -> str:
    rows = admin.execute("EXPLAIN " + query, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_claim_walks_the_partial_pending_index(admin):
    _fill(admin, pending=20_000, done=50_000)
    params = {"worker": "w", "now": None, "lease": LEASE, "limit": 10}
    plan = _plan(admin, Q["claim"], params)
    assert "jobs_pending" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    assert "LockRows" in plan, plan
    # A common queue: walking jobs_pending and filtering is as good; the planner chooses.
    plan = _plan(admin, Q["claim_from_queues"], {**params, "queues": ["q1", "q2"]})
    assert "jobs_pending" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    # A rare queue: straight to its slice of the per-queue index.
    admin.execute(
        "UPDATE jobs SET queue = 'rare' WHERE id IN"
        " (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 20)"
    )
    admin.execute("ANALYZE jobs")
    plan = _plan(admin, Q["claim_from_queues"], {**params, "queues": ["rare"]})
    assert "jobs_pending_by_queue" in plan, plan


def test_claim_returns_priority_then_age_order_and_skips_locked_rows(pg_store, pg_url):
    pg_store.enqueue_many([new_job("t", i, priority=i % 3) for i in range(9)])
    with psycopg.connect(pg_url) as holder:
        # Another claimer's open transaction holds the two best rows...
        locked = holder.execute(
            "SELECT id FROM jobs ORDER BY priority DESC, run_at, id LIMIT 2 FOR UPDATE"
        ).fetchall()
        started = time.monotonic()
        # ...so this claim passes over them at once instead of waiting for that transaction.
        jobs = pg_store.claim(worker="w", queues=None, limit=3, lease=LEASE)
        assert time.monotonic() - started < 2
        holder.rollback()
    assert {j.id for j in jobs}.isdisjoint({row[0] for row in locked})
    assert [j.priority for j in jobs] == [2, 1, 1]
    assert [j.payload for j in jobs] == [8, 1, 4]


def test_concurrent_claims_from_many_threads_are_disjoint_and_cover_the_backlog(pg_url):
    setup = PostgresStore(pg_url)
    setup.enqueue_many([new_job("t", i, queue=f"q{i % 3}") for i in range(1000)])
    setup.close()
    claimed: dict[int, list[int]] = {}

    def worker(index: int) -> None:
        store = PostgresStore(pg_url)  # its own pool, as another process would have
        mine: list[int] = []
        claimed[index] = mine
        try:
            queues = None if index % 2 else ["q0", "q1", "q2"]
            while jobs := store.claim(worker=f"w{index}", queues=queues, limit=9, lease=LEASE):
                mine += [j.id for j in jobs]
                assert all(j.worker == f"w{index}" and j.attempts == 1 for j in jobs)
        finally:
            store.close()

    assert run_threads(8, worker) == []
    ids = [i for mine in claimed.values() for i in mine]
    assert len(ids) == len(set(ids)) == 1000
    check = PostgresStore(pg_url)
    try:
        assert check.stats() == {f"q{i}": {"processing": n} for i, n in enumerate((334, 333, 333))}
    finally:
        check.close()


def test_concurrent_enqueues_of_one_unique_key_create_one_job(pg_url):
    results: list[tuple[int, bool]] = []

    def producer(index: int) -> None:
        store = PostgresStore(pg_url)
        try:
            for _ in range(20):
                r = store.enqueue(new_job("t", index, unique_key="same"))
                results.append((r.job.id, r.created))
        finally:
            store.close()

    assert run_threads(6, producer) == []
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_enqueue_many_unique_keys_within_and_across_batches(pg_store):
    held = pg_store.enqueue(new_job("t", "old", unique_key="a")).job
    results = pg_store.enqueue_many(
        [
            new_job("t", 0, unique_key="a"),
            new_job("t", 1, unique_key="b"),
            new_job("t", 2),
            new_job("t", 3, unique_key="b"),
        ]
    )
    assert [r.created for r in results] == [False, True, True, False]
    assert results[0].job.id == held.id
    assert results[3].job.id == results[1].job.id
    assert [r.job.payload for r in results] == ["old", 1, 2, 1]
    assert results[1].job.id < results[2].job.id


def test_enqueue_many_is_all_or_nothing(pg_store):
    bad = new_job("t", 1)
    bad.payload_json = "{not json"  # past validation: the database refuses it mid-batch
    with pytest.raises(StoreUnavailable):
        pg_store.enqueue_many([new_job("t", 0), bad])
    assert pg_store.list_jobs(JobFilter()) == []


def test_batched_heartbeats_and_finishes_in_opposite_orders_do_not_deadlock(pg_store):
    pg_store.enqueue_many([new_job("t", i) for i in range(200)])
    jobs = pg_store.claim(worker="w", queues=None, limit=200, lease=LEASE)
    refs = [j.lease_ref() for j in jobs]

    def beat(index: int) -> None:
        order = refs if index % 2 else refs[::-1]
        for _ in range(15):
            assert pg_store.heartbeat(order, lease=LEASE).lost == set()

    assert run_threads(4, beat) == []
    outcomes = [Finish.done(r, "1") for r in refs[::-1]]
    assert set(pg_store.finish_many(outcomes).values()) == {JobStatus.DONE}
    assert pg_store.heartbeat(refs, lease=LEASE).lost == {r.job_id for r in refs}


# -- connections ----------------------------------------------------------------------------
def test_a_busy_process_stays_within_its_pool(pg_store, admin):
    pg_store.enqueue(new_job("t", 1))

    def busy(index: int) -> None:
        for _ in range(30):
            pg_store.stats()
            pg_store.claim(worker=f"w{index}", queues=None, limit=1, lease=LEASE)

    assert run_threads(16, busy) == []
    # Two pools (client, runtime), each within its bound.
    assert 1 <= len(backends(admin, "conveyor")) <= POOL_MAX_SIZE
    assert 1 <= len(backends(admin, "conveyor-runtime")) <= POOL_MAX_SIZE


def test_store_recovers_after_its_connections_are_terminated(pg_store, admin):
    job = pg_store.enqueue(new_job("t", 1)).job

    def use(_: int) -> None:
        for _ in range(20):
            pg_store.stats()
            pg_store.recover_expired()

    assert run_threads(4, use) == []
    victims = backends(admin, "conveyor") + backends(admin, "conveyor-runtime")
    assert len(victims) >= 2
    terminate(admin, victims)
    wait_until(
        lambda: set(backends(admin, "conveyor") + backends(admin, "conveyor-runtime")).isdisjoint(
            victims
        ),
        message="backends gone",
    )

    # Dead pooled connections fail on first use; the store replaces them and runs the
    # (uncommitted, so safely repeatable) transaction again.
    got = pg_store.get_job(job.id)
    assert got is not None and got.id == job.id
    for _ in range(10):
        assert pg_store.stats() == {"default": {"pending": 1}}
    assert [j.id for j in pg_store.claim(worker="w", queues=None, limit=5, lease=LEASE)] == [job.id]
    assert set(backends(admin, "conveyor") + backends(admin, "conveyor-runtime")).isdisjoint(
        victims
    )


def test_close_is_idempotent_and_later_calls_fail_cleanly(pg_url):
    store = PostgresStore(pg_url)
    store.ping()
    store.close()
    store.close()
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_unreachable_database_is_a_one_line_store_unavailable():
    store = open_store("postgresql://postgres@127.0.0.1:1/nowhere")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.ping()
    finally:
        store.close()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "127.0.0.1:1" in message


def test_missing_database_says_so(pg_url):
    store = open_store(pg_url.rsplit("/", 1)[0] + "/conveyor_no_such_db")
    try:
        with pytest.raises(StoreUnavailable, match="does not exist"):
            store.schema_version()
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    ["postgresql://host/db?bogus_option=1", "postgresql://[::1/db", "postgres://h:99999999999/x"],
)
def test_malformed_url_is_a_configuration_error(url):
    with pytest.raises((ConfigurationError, StoreUnavailable)) as caught:
        open_store(url).ping()
    assert "\n" not in str(caught.value)


def test_password_never_appears_in_messages():
    store = open_store("postgresql://user:s3cret@127.0.0.1:1/db")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.ping()
    finally:
        store.close()
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(store)


def test_times_are_utc_whatever_the_session_time_zone(pg_url):
    store = PostgresStore(pg_url + "?options=-c%20TimeZone%3DAsia/Kolkata")
    try:
        at = (utcnow() + timedelta(hours=1)).replace(microsecond=654321)
        job = store.enqueue(new_job("t", 1, run_at=at)).job
        assert job.run_at == at and job.run_at.utcoffset() == timedelta(0)
        assert job.created_at.utcoffset() == timedelta(0)
    finally:
        store.close()


# -- schema ---------------------------------------------------------------------------------
def test_concurrent_migrations_of_a_fresh_database_agree():
    url = pg.create_database("conveyor_migrate")
    try:
        fresh = PostgresStore(url)
        assert fresh.schema_version() == 0
        versions: list[int] = []

        def migrate(_: int) -> None:
            store = PostgresStore(url)
            try:
                versions.append(store.migrate())
            finally:
                store.close()

        latest = len(MIGRATIONS)
        assert run_threads(6, migrate) == []
        assert versions == [latest] * 6
        assert fresh.schema_version() == latest
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (latest,)
        fresh.close()
    finally:
        pg.drop_database(url)


def test_outcomes_land_while_heartbeats_update_the_same_rows(pg_store):
    # Each outcome locks its row after a concurrent heartbeat moved it to a new row version:
    # the fence is re-checked on that version and the outcome must still land.
    pg_store.enqueue_many([new_job("t", i) for i in range(200)])
    refs = [j.lease_ref() for j in pg_store.claim(worker="w", queues=None, limit=200, lease=LEASE)]
    assert len(refs) == 200
    finished = threading.Event()

    def beat() -> None:
        while not finished.is_set():
            pg_store.heartbeat(refs, lease=LEASE)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        statuses = {}
        for ref in refs:
            statuses.update(pg_store.finish_many([Finish.done(ref, "1")]))
    finally:
        finished.set()
        beater.join(30)
    assert statuses == {ref.job_id: JobStatus.DONE for ref in refs}

"""LISTEN/NOTIFY wake-ups: fast, transactional, and surviving a lost listener connection."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest

from conveyor.stores.postgres.notifier import PostgresNotifier
from conveyor.stores.postgres.store import PostgresStore
from conveyor.validation import new_job
from tests.postgres.conftest import backends, terminate
from tests.support.wait import async_wait_until, wait_until

pytestmark = pytest.mark.postgres


def test_enqueue_by_another_store_wakes_the_notifier_within_milliseconds(pg_store, pg_url):
    async def scenario() -> float:
        notifier = pg_store.notifier()
        await notifier.start()
        producer = PostgresStore(pg_url)  # another process's store, in effect
        try:
            producer.ping()  # connect first, so the timing below is the wake-up alone
            started = time.monotonic()
            await asyncio.to_thread(producer.enqueue, new_job("t", 1))
            assert await notifier.wait(5.0), "no wake-up"
            return time.monotonic() - started
        finally:
            producer.close()
            await notifier.stop()

    elapsed = asyncio.run(scenario())
    assert elapsed < 0.5, f"woken after {elapsed:.3f}s"


def test_wait_times_out_without_notifications(pg_store: PostgresStore) -> None:
    async def scenario() -> bool:
        notifier = pg_store.notifier()
        await notifier.start()
        try:
            return await notifier.wait(0.05)
        finally:
            await notifier.stop()

    assert asyncio.run(scenario()) is False


def test_wake_local_from_another_thread(pg_store: PostgresStore) -> None:
    async def scenario() -> bool:
        notifier = pg_store.notifier()
        await notifier.start()
        try:
            await asyncio.to_thread(notifier.wake_local)
            return await notifier.wait(5.0)
        finally:
            await notifier.stop()

    assert asyncio.run(scenario()) is True


def _notifications_until_marker(listener: psycopg.Connection, marker: str) -> list[str]:
    """Payloads received up to and including `marker`: NOTIFYs arrive in commit order, so an
    earlier transaction's notification would come before the marker's."""
    seen: list[str] = []
    for note in listener.notifies(timeout=10):
        seen.append(note.payload)
        if note.payload == marker:
            return seen
    raise AssertionError(f"marker {marker!r} never arrived; got {seen}")


def test_enqueue_in_the_callers_transaction_commits_and_notifies_with_it(pg_store, pg_url):
    with (
        psycopg.connect(pg_url, autocommit=True) as listener,
        psycopg.connect(pg_url) as app_conn,
    ):
        listener.execute("LISTEN conveyor_jobs")

        # Rolled back: no job, and nobody woken.
        with app_conn.transaction(force_rollback=True):
            gone = pg_store.enqueue(
                new_job("t", "rolled back", queue="q-rollback"), connection=app_conn
            )
            assert gone.created
        assert pg_store.get_job(gone.job.id) is None

        # Committed by the caller: the job exists and listeners hear about it.
        with app_conn.transaction():
            kept = pg_store.enqueue(new_job("t", "kept", queue="q-commit"), connection=app_conn)
            assert pg_store.get_job(kept.job.id) is None, "visible before the caller committed"
        stored = pg_store.get_job(kept.job.id)
        assert stored is not None and stored.payload == "kept"

        pg_store.enqueue(new_job("t", "marker", queue="q-marker"))
        assert _notifications_until_marker(listener, "q-marker") == ["q-commit", "q-marker"]


def test_enqueue_refuses_a_connection_that_is_not_psycopg(pg_store):
    with pytest.raises(TypeError):
        pg_store.enqueue(new_job("t", 1), connection=object())


def test_a_unique_key_conflict_wakes_nobody(pg_store, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as listener:
        first = pg_store.enqueue(new_job("t", 1, queue="q-first", unique_key="k"))
        listener.execute("LISTEN conveyor_jobs")
        again = pg_store.enqueue(new_job("t", 2, queue="q-dup", unique_key="k"))
        assert not again.created and again.job.id == first.job.id
        pg_store.enqueue(new_job("t", "marker", queue="q-marker"))
        assert _notifications_until_marker(listener, "q-marker") == ["q-marker"]


def test_release_and_recovery_wake_other_processes(pg_store, pg_url):
    from datetime import timedelta

    from conveyor.jobs import utcnow

    pg_store.enqueue_many([new_job("t", i, queue=f"q{i}") for i in range(2)])
    jobs = pg_store.claim(worker="w", queues=None, limit=2, lease=timedelta(seconds=30))
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        assert pg_store.release([jobs[0].lease_ref()]) == {jobs[0].id}
        recovered = pg_store.recover_expired(now=utcnow() + timedelta(minutes=5))
        assert recovered.requeued == [jobs[1].id]
        pg_store.enqueue(new_job("t", "marker", queue="q-marker"))
        got = _notifications_until_marker(listener, "q-marker")
    assert got == [jobs[0].queue, jobs[1].queue, "q-marker"]


def test_notifier_reconnects_after_its_backend_is_terminated(pg_store, pg_url, admin, caplog):
    caplog.set_level(logging.INFO, logger="conveyor.postgres")

    def listeners() -> list[int]:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE '%LISTEN%'"
            " AND state = 'idle' AND pid <> pg_backend_pid()"
        ).fetchall()
        return [row[0] for row in rows]

    async def scenario() -> None:
        notifier = pg_store.notifier()
        assert isinstance(notifier, PostgresNotifier)
        await notifier.start()
        producer = PostgresStore(pg_url)
        try:
            old = await async_wait_until(listeners, message="listener backend")
            assert len(old) == 1
            assert backends(admin, "conveyor-listener") == old
            terminate(admin, old)

            # Back on a new backend, and it wakes its waiters: jobs may have been enqueued
            # while nobody listened.
            def replaced() -> list[int]:
                pids = listeners()
                return pids if pids and pids != old else []

            await async_wait_until(replaced, message="listener reconnected")
            assert await notifier.wait(5.0), "no wake-up after reconnecting"
            await async_wait_until(lambda: notifier.connected)

            # ...and it still hears other processes' enqueues.
            await asyncio.to_thread(producer.enqueue, new_job("t", "after"))
            assert await notifier.wait(5.0), "no wake-up after the reconnect"
        finally:
            producer.close()
            await notifier.stop()

    asyncio.run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "lost the LISTEN connection" in warnings[0].getMessage()
    assert any("is back" in r.getMessage() for r in infos)


def test_notifier_started_while_the_database_is_unreachable_keeps_trying(caplog):
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere")

    async def scenario() -> bool:
        notifier = store.notifier()
        await notifier.start()  # does not raise: fetchers fall back to polling
        try:
            notifier.wake_local()
            return await notifier.wait(1.0)
        finally:
            await notifier.stop()

    try:
        assert asyncio.run(scenario()) is True
    finally:
        store.close()
    assert any("cannot LISTEN" in r.getMessage() for r in caplog.records)


def test_stop_releases_the_listener_connection(pg_store, admin):
    async def scenario() -> None:
        notifier = pg_store.notifier()
        await notifier.start()
        assert len(backends(admin, "conveyor-listener")) == 1
        await notifier.stop()
        await notifier.stop()  # twice is harmless

    asyncio.run(scenario())
    wait_until(lambda: backends(admin, "conveyor-listener") == [], message="listener closed")

"""A database restart, played by a proxy that drops every connection and refuses new ones
for a while: the store and the notifier report the outage briefly, then carry on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from psycopg.conninfo import conninfo_to_dict

from conveyor import Conveyor
from conveyor.errors import StoreUnavailable
from conveyor.stores.postgres.notifier import PostgresNotifier
from conveyor.stores.postgres.store import PostgresStore
from conveyor.validation import new_job
from conveyor.worker import PoolConfig, WorkerPool
from tests.postgres.proxy import FlakyProxy, flaky_proxy
from tests.support.wait import async_wait_until, wait_until

pytestmark = pytest.mark.postgres

T = TypeVar("T")


@pytest.fixture
def proxy(pg_url: str) -> Iterator[FlakyProxy]:
    params = conninfo_to_dict(pg_url)
    with flaky_proxy(str(params.get("host", "127.0.0.1")), int(str(params.get("port", 5432)))) as p:
        yield p


def via(proxy: FlakyProxy, pg_url: str) -> str:
    params = conninfo_to_dict(pg_url)
    return (
        f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{params['dbname']}"
    )


def attempt(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except StoreUnavailable:
        return None


def test_store_reports_the_outage_then_reconnects_losing_nothing(pg_url, proxy):
    store = PostgresStore(via(proxy, pg_url))
    try:
        jobs = [store.enqueue(new_job("t", i)).job for i in range(3)]
        proxy.down()

        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            store.get_job(jobs[0].id)
        # Fails fast with the reason (the connection is refused), rather than hanging.
        assert time.monotonic() - started < 3
        assert "\n" not in str(caught.value)
        assert attempt(store.stats) is None  # still down: fails, does not hang

        proxy.up()
        up = time.monotonic()
        stats = wait_until(lambda: attempt(store.stats), timeout=20, message="store is back")
        assert time.monotonic() - up < 3
        assert stats == {"default": {"pending": 3}}
        claimed = store.claim(
            worker="w", queues=None, limit=10, lease=__import__("datetime").timedelta(seconds=30)
        )
        assert sorted(j.id for j in claimed) == [j.id for j in jobs]
    finally:
        store.close()


def test_notifier_listens_again_after_the_outage(pg_url, proxy, caplog):
    caplog.set_level(logging.INFO, logger="conveyor.postgres")
    listened = PostgresStore(via(proxy, pg_url))
    producer = PostgresStore(pg_url)  # straight to the database

    async def scenario() -> None:
        notifier = listened.notifier()
        assert isinstance(notifier, PostgresNotifier)
        await notifier.start()
        try:
            proxy.down()
            await async_wait_until(lambda: not notifier.connected, message="outage noticed")
            notifier_was_woken = await notifier.wait(0)  # drain anything pending
            del notifier_was_woken
            await asyncio.to_thread(producer.enqueue, new_job("t", "during the outage"))
            proxy.up()
            # Reconnected, and it wakes the fetchers: a job came in while nobody listened.
            assert await notifier.wait(15.0), "no wake-up after reconnecting"
            assert notifier.connected
            await asyncio.to_thread(producer.enqueue, new_job("t", "after"))
            assert await notifier.wait(5.0), "no wake-up for a job enqueued after the outage"
        finally:
            await notifier.stop()

    try:
        asyncio.run(scenario())
    finally:
        listened.close()
        producer.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "conveyor.postgres"]
    assert sum("lost the LISTEN connection" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages


def test_a_worker_cut_off_from_the_database_stops_its_job_before_the_lease_expires(
    pg_url, proxy, admin, caplog
):
    # A partition: this worker's connections die while the database (and any other worker)
    # carries on. Past its lease the job can be recovered and started elsewhere, so the
    # worker must stop it first.
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    app = Conveyor(via(proxy, pg_url))
    stopped: list[float] = []

    @app.task
    async def long_call() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(time.time())
            raise

    async def scenario() -> None:
        pool = WorkerPool(app, PoolConfig(concurrency=2, fetch_interval=0.2, lease=1.5))
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        try:
            job = await asyncio.to_thread(app.enqueue, "long_call")
            await async_wait_until(lambda: pool.busy == 1, message="job running")
            proxy.down()
            await async_wait_until(lambda: stopped, timeout=10, message="job stopped")
            (expires_at,) = admin.execute(
                "SELECT extract(epoch FROM lease_expires_at) FROM jobs WHERE id = %s", (job.id,)
            ).fetchone()
            assert stopped[0] < float(expires_at), "stopped before the lease expired"
            assert pool.busy == 0
        finally:
            proxy.up()
            stop.set()
            await asyncio.wait_for(runner, 30)

    try:
        asyncio.run(scenario())
    finally:
        app.close()
    assert any("about to expire: stopping the job" in r.getMessage() for r in caplog.records)

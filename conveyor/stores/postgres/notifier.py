"""PostgresNotifier: one dedicated connection LISTENs on `conveyor_jobs`; any notification
wakes this process's idle fetchers within milliseconds of the enqueueing commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from conveyor.stores import sqlfile
from conveyor.stores.base import Notifier
from conveyor.stores.postgres.connections import first_line

Q = sqlfile.load("conveyor.stores.postgres")
log = logging.getLogger("conveyor.postgres")

# Reconnect backoff after the connection drops (database restart, failover, terminated
# backend): quick at first, since a restart takes seconds, then no more than every 5 s.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# With no notification for this long the connection is probed: a peer that vanished
# without closing the socket would otherwise leave us listening to nothing.
PROBE_INTERVAL_S = 30.0
CANCEL_CHANNEL = "conveyor_cancel"
PROBE_TIMEOUT_S = 10.0


class PostgresNotifier(Notifier):
    """Notifications carry no job data (the payload is the queue name, unused): a wake-up
    only makes the fetcher claim now instead of at its next poll. While the connection is
    down the fetcher still polls every FETCH_INTERVAL, so an outage slows wake-ups and
    loses no job; after reconnecting the notifier wakes everyone, because jobs may have
    been enqueued while nobody was listening."""

    def __init__(self, conninfo: str, *, where: str) -> None:
        self._conninfo = conninfo
        self._where = where
        super().__init__()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        conn = self._conn
        return conn is not None and not conn.closed

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # The first connection is made here, so that once start() returns every later
        # commit's notification reaches us (when the database is up at all).
        try:
            await self._connect()
        except psycopg.Error as exc:
            log.warning(
                "cannot LISTEN for wake-ups at %s (%s); retrying in the background, "
                "fetchers poll meanwhile",
                self._where,
                first_line(exc),
            )
        self._task = asyncio.create_task(self._run(), name="conveyor-pg-notifier")

    async def _connect(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            await conn.execute(Q["listen"])
            await conn.execute(Q["listen_cancel"])
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _run(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            conn = self._conn
            if conn is None:
                try:
                    await self._connect()
                except psycopg.Error as exc:
                    log.debug("LISTEN reconnect to %s failed: %s", self._where, first_line(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_MIN_S
                log.info("LISTEN connection to %s is back; waking fetchers", self._where)
                self._event.set()
                continue
            try:
                await self._listen(conn)  # returns only by raising
            except (psycopg.Error, TimeoutError) as exc:
                # Once per outage: the reconnect attempts that follow log at debug level.
                log.warning(
                    "lost the LISTEN connection to %s (%s); reconnecting, fetchers poll meanwhile",
                    self._where,
                    first_line(exc),
                )
                await self._drop()

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wake on every notification until the connection fails (raises)."""
        while True:
            async for notice in conn.notifies(timeout=PROBE_INTERVAL_S):
                if notice.channel == CANCEL_CHANNEL:
                    self._job_cancelled(int(notice.payload) if notice.payload.isdigit() else None)
                else:
                    self._event.set()
            await asyncio.wait_for(conn.execute(Q["listen"]), PROBE_TIMEOUT_S)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()


class PollingNotifier(Notifier):
    """No LISTEN: through a transaction-mode pooler without LISTEN_DATABASE_URL a listening
    session cannot be kept (each transaction may run on another server connection), so
    fetchers poll every fetch interval. Only this process's own enqueues wake them sooner
    (`wake_local`); a cancelled run stops at its next heartbeat."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._loop = None

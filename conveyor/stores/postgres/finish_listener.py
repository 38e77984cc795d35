"""PostgresFinishListener: one connection LISTENs on `conveyor_finished` for the process's
`Conveyor.wait` calls; every statement that finishes jobs notifies their ids in its
transaction (comma-separated decimal text), delivered at its commit."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import psycopg

from conveyor.errors import StoreUnavailable
from conveyor.stores import sqlfile
from conveyor.stores.base import FinishListener
from conveyor.stores.postgres.connections import first_line

Q = sqlfile.load("conveyor.stores.postgres")
log = logging.getLogger("conveyor.postgres")

CHANNEL = "conveyor_finished"
# Reconnect backoff after the connection drops (a database restart takes seconds): quick at
# first, then no more than every 5 s. Waiters re-check every second meanwhile.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# A bigint has at most 19 digits; a longer "id" is not one (and int() of thousands of
# digits would raise).
_ID_DIGITS_MAX = 19


def parse_ids(payload: str) -> frozenset[int] | None:
    """The job ids of a notification's payload ("12,13"); None when it holds none or
    anything but ids (an empty or garbled payload, another sender's): any job may have
    finished then."""
    ids = set()
    for part in payload.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit() and len(part) <= _ID_DIGITS_MAX):
            return None
        ids.add(int(part))
    return frozenset(ids)


class PostgresFinishListener(FinishListener):
    """A plain (sync) autocommit connection, read by the waiters' thread only. Once the
    connection drops it reconnects with backoff; after reconnecting `wait` answers "any
    job" (None), because finishes may have gone unheard meanwhile. A peer that vanished
    without closing the socket is noticed by TCP keepalive (the store's URL defaults)."""

    # PostgreSQL queues notifications for a listening session until it reads them.
    drains_when_idle = True

    def __init__(self, conninfo: str, *, where: str) -> None:
        self._conninfo = conninfo
        self._where = where
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._delay = BACKOFF_MIN_S
        self._ever_connected = False

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed

    def connect(self) -> None:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL at {self._where}: {first_line(exc)}") from None
        try:
            conn.execute(Q["listen_finished"])
            conn.execute(Q["add_finish_listener"])  # finishing statements notify from now on
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"PostgreSQL at {self._where}: {first_line(exc)}") from None
        self._conn = conn
        self._delay = BACKOFF_MIN_S
        self._ever_connected = True

    def wait(self, timeout: float) -> frozenset[int] | None:
        conn = self._conn
        if conn is None:
            return self._reconnect(timeout)
        try:
            return self._receive(conn, timeout)
        except psycopg.Error as exc:
            # Once per outage: the reconnect attempts that follow log at debug level.
            log.warning(
                "lost the LISTEN connection for waiting on jobs to %s (%s); reconnecting, "
                "waiters re-check every second meanwhile",
                self._where,
                first_line(exc),
            )
            self.close()
            self._retry_at = time.monotonic()
            return frozenset()

    def _receive(self, conn: psycopg.Connection[Any], timeout: float) -> frozenset[int] | None:
        """Wait for the first notification, then take whatever else has arrived."""
        notices = list(conn.notifies(timeout=max(timeout, 0.0), stop_after=1))
        if notices:
            notices += conn.notifies(timeout=0)
        ids: set[int] = set()
        for notice in notices:
            if notice.channel != CHANNEL:
                continue
            found = parse_ids(notice.payload)
            if found is None:
                return None
            ids |= found
        return frozenset(ids)

    def _reconnect(self, timeout: float) -> frozenset[int] | None:
        now = time.monotonic()
        if now < self._retry_at:
            time.sleep(min(timeout, self._retry_at - now))
            return frozenset()
        back = self._ever_connected
        try:
            self.connect()
        except StoreUnavailable as exc:
            log.debug("LISTEN reconnect for waiting on jobs failed: %s", exc)
            self._retry_at = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, BACKOFF_MAX_S)
            return frozenset()
        if back:
            log.info("LISTEN connection for waiting on jobs to %s is back", self._where)
        return None  # finishes while nobody listened went unheard: re-check every waiter

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.execute(Q["remove_finish_listener"])
            with contextlib.suppress(Exception):
                conn.close()


class PollingFinishListener(FinishListener):
    """No LISTEN (a transaction-mode pooler without LISTEN_DATABASE_URL): hears nothing,
    so waiters are answered by the watch's once-a-second re-read of their jobs."""

    def connect(self) -> None:
        pass

    def wait(self, timeout: float) -> frozenset[int] | None:
        time.sleep(max(timeout, 0.0))
        return frozenset()

    def close(self) -> None:
        pass

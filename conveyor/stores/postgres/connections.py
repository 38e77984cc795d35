"""Connections: one bounded psycopg pool, opened on first use and replaced when its
connections die (database restart), with the store's retry rule for a failed call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from conveyor import jsontext
from conveyor.errors import StoreUnavailable

T = TypeVar("T")
Cursor = psycopg.Cursor[DictRow]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


class Connections:
    """A pool of autocommit connections to `conninfo`. `where` ("host:port/db") names the
    database in error messages; `connect_timeout` bounds a first connection."""

    def __init__(
        self,
        conninfo: str,
        *,
        where: str,
        name: str,
        min_size: int,
        max_size: int,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._conninfo = conninfo
        self._where = where
        self._name = name
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL at {self._where}: {first_line(exc)}")

    def run(self, work: Callable[[Cursor], T], *, atomic: bool = False) -> T:
        """Run `work` on a pooled connection. Connections are in autocommit: a single
        statement is its own transaction, one round trip with no BEGIN/COMMIT around it;
        `atomic=True` wraps `work` in one transaction for multi-statement work.

        A connection that died while idle in the pool (database restart, terminated
        backend) fails on first use; that transaction certainly did not commit, so the
        pool is replaced and `work` runs once more: at once when only the connections
        died, or failing fast with the reason while the database is down. A deadlock or
        serialization failure (rolled back by the server) is also run once more. A failure
        at commit is never repeated: it may have committed."""
        for attempt in (1, 2):
            pool = self._pool or self._open()
            held: psycopg.Connection[Any] | None = None
            try:
                with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    held = conn
                    if atomic:
                        with conn.transaction():
                            result = work(cur)
                            held = None  # from here on (commit) a failure is not repeated
                    else:
                        result = work(cur)
                        held = None
                return result
            except PoolClosed as exc:
                # Another thread replaced the pool under us (or close() was called).
                if attempt == 2 or self._closed:
                    raise self.unavailable(exc) from None
            except PoolTimeout as exc:
                # Database down (the pool is still backing off) or every connection busy.
                try:
                    self.probe()
                except StoreUnavailable:
                    self._discard(pool)
                    raise
                raise self.unavailable(exc) from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == 2 or held is None:
                    raise self.unavailable(exc) from None
                if held.closed:
                    self._discard(pool)
                elif not (exc.sqlstate or "").startswith("40"):
                    # class 40, transaction rollback (deadlock, serialization failure): the
                    # server rolled it back, so it may run again; psycopg's classes for them
                    # are not subclasses of its TransactionRollback
                    raise self.unavailable(exc) from None
            except psycopg.Error as exc:
                raise self.unavailable(exc) from None
        raise AssertionError("unreachable")

    def probe(self) -> None:
        """One direct connection: says at once why the database cannot be reached."""
        try:
            psycopg.connect(self._conninfo).close()
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=self._connect_timeout)

    def _open(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is not None:
                return self._pool
            if self._closed:
                raise StoreUnavailable("store is closed")
            # One direct attempt first: the pool retries failed connections in the
            # background and would only report a timeout, while this says at once why the
            # database cannot be reached (refused, bad password, no such database, starting
            # up). It also makes every call fail fast while the database is down.
            self.probe()
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self._conninfo,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                # Give up a background reconnect soon: a call that needs a connection then
                # starts a fresh attempt, rather than waiting out a long backoff after the
                # database is back.
                reconnect_timeout=self._connect_timeout * 2,
                name=self._name,
                kwargs={"autocommit": True},
                configure=_configure,
                open=False,
            )
            try:
                pool.open(wait=True, timeout=self._connect_timeout * 2)
            except PoolTimeout as exc:
                pool.close()
                raise self.unavailable(exc) from None
            self._pool = pool
            return pool

    def _discard(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        """Drop a pool whose connections died (database restart): the next call probes
        and builds a new one. Connections other threads still hold close on return."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        # Closing waits for the pool's worker threads (maybe mid-connect): not on the
        # caller's time.
        threading.Thread(target=pool.close, name="conveyor-pool-close", daemon=True).start()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Per new connection: jsonb columns are parsed by Conveyor's JSON reader (the same
    values as json.loads, without its per-call overhead: a payload is read per claim)."""
    set_json_loads(jsontext.loads, conn)

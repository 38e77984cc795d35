"""Connections: one bounded psycopg pool, opened on first use and replaced when its
connections die (database restart), with the store's retry rule for a failed call; and the
URL form that declares a transaction-mode pooler (`?pooler=transaction`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from conveyor import jsontext
from conveyor.errors import ConfigurationError, StoreUnavailable

T = TypeVar("T")
Cursor = psycopg.Cursor[DictRow]


# `?pooler=transaction` (or `&pooler=…`) in a PostgreSQL URL: Conveyor's own parameter,
# which libpq does not know, so it is taken out before the URL reaches psycopg.
_POOLER = re.compile(r"([?&])pooler=([^&#]*)&?")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def split_pooler(url: str) -> tuple[str, bool]:
    """(the URL without its `pooler` parameter, whether it declares a transaction-mode
    pooler); ConfigurationError for any other value. (Declaring a session-mode PgBouncer
    so is right too: it keeps sessions, but refuses startup options all the same.)"""
    match = _POOLER.search(url)
    if match is None:
        return url, False
    if match.group(2) != "transaction":
        raise ConfigurationError(
            f"unsupported pooler={match.group(2)!r} in the PostgreSQL URL: "
            "use pooler=transaction (right for PgBouncer in any pool mode)"
        )
    rest = url[: match.start()] + (match.group(1) if match.group(0).endswith("&") else "")
    rest += url[match.end() :]
    return rest.rstrip("?&"), True


class LocalSettingsCursor(psycopg.ClientCursor[DictRow]):
    """Runs every statement after `SET LOCAL <settings>`, in one message of the simple query
    protocol: PostgreSQL runs the two as one transaction (or inside the caller's), so the
    settings steer that statement's plan and end with it, one round trip as before. For
    connections through a transaction-mode pooler, where a session setting would stay on
    a server connection that other clients get next, and startup options are refused.
    Parameters are bound client-side (the simple protocol takes none), as literals."""

    def __init__(self, connection: psycopg.Connection[Any], settings: Sequence[str]) -> None:
        super().__init__(connection, row_factory=dict_row)
        self._prelude = sql.SQL("".join(f"SET LOCAL {setting}; " for setting in settings))
        self._sets = len(settings)

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        text = sql.SQL(query) if isinstance(query, str) else query
        if not isinstance(text, sql.Composable):
            raise TypeError(f"unsupported query type {type(query).__name__}")
        super().execute(self._prelude + text, params, prepare=prepare, binary=binary)
        for _ in range(self._sets):
            self.nextset()  # past each SET's result, to the statement's
        return self


class Connections:
    """A pool of autocommit connections to `conninfo`. `where` ("host:port/db") names the
    database in error messages; `connect_timeout` bounds a first connection. `pooled`: the
    conninfo reaches a transaction-mode pooler, so nothing may rely on a session: no
    prepared statements; `local_settings` ("name = value" each) are set per statement
    (LocalSettingsCursor)."""

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
        pooled: bool = False,
        local_settings: Sequence[str] = (),
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
        self._pooled = pooled
        self._local_settings = tuple(local_settings)

    def _cursor(self, conn: psycopg.Connection[Any], settings: bool) -> Cursor:
        if not (settings and self._local_settings):
            return conn.cursor(row_factory=dict_row)
        return LocalSettingsCursor(conn, self._local_settings)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        reason = first_line(exc)
        if "unsupported startup parameter" in reason and not self._pooled:
            # PgBouncer's answer to the runtime's session settings
            reason += " (a transaction-mode pooler? end the URL with ?pooler=transaction)"
        return StoreUnavailable(f"PostgreSQL at {self._where}: {reason}")

    def run(self, work: Callable[[Cursor], T], *, atomic: bool = False, settings: bool = True) -> T:
        """Run `work` on a pooled connection. Connections are in autocommit: a single
        statement is its own transaction, one round trip with no BEGIN/COMMIT around it;
        `atomic=True` wraps `work` in one transaction for multi-statement work.
        `settings=False`: statements go without the `local_settings` (calls of functions
        that set their own).

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
                with pool.connection() as conn, self._cursor(conn, settings) as cur:
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
                kwargs=self._kwargs(),
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

    def _kwargs(self) -> dict[str, Any]:
        if not self._pooled:
            return {"autocommit": True}
        # Never prepared: through a transaction-mode pooler the next statement may run on
        # another server connection, where a statement prepared on this one does not exist.
        return {"autocommit": True, "prepare_threshold": None}

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

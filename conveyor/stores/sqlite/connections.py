"""The SQLite store's connection layer: one connection per thread, the write lock, and what
to do when the database file is in trouble.

- Every sqlite3 error on a store path becomes StoreUnavailable with a one-line message
  that names the file and what went wrong (the API answers 503 with it, the CLI prints it).
- A rollback only runs when a transaction is open (SQLite rolls back on its own after some
  errors, and ROLLBACK then fails with "no transaction is active"), and its own failure is
  never what the caller sees.
- A connection is reopened after an error that can leave it broken or read-only for good
  (READONLY, IOERR, CANTOPEN, CORRUPT, NOTADB, PERM): SQLite opens a file it cannot write
  read-only and keeps it so, so a connection opened while the file was briefly not writable
  would otherwise fail every write for the life of the process. A connection opened while
  the file was not writable is also reopened as soon as it is writable again, before its
  first write can fail.
- The database file's identity (st_dev, st_ino) is recorded when the store first opens it
  and checked at most every FILE_CHECK_INTERVAL_S on every store call (always in `ping`).
  A file deleted, renamed or replaced under a running process would otherwise split the
  brain silently: this process would go on writing into a file no other process sees.
  From then on every call raises StoreFileReplaced, and serving processes stop
  (conveyor/process.py). Later connections open the path without creating it, so this
  process never makes a fresh empty database where the old one was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import StoreFileReplaced, StoreUnavailable

# How often, at most, the file's identity and writability are looked at on the store's
# call paths: a stat and an access(2) or two, microseconds, twice a second.
FILE_CHECK_INTERVAL_S = 0.5

# Primary result codes after which a connection may stay broken or read-only: reopen it.
_REOPEN_CODES = frozenset(
    {
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
    }
)
_REOPEN_TEXTS = (
    "readonly database",
    "disk i/o error",
    "unable to open database",
    "malformed",
    "not a database",
    "closed database",
)

_HINTS = {
    sqlite3.SQLITE_READONLY: "the database file, its -wal or -shm file or its directory is "
    "read-only",
    sqlite3.SQLITE_IOERR: "the file system reported an I/O error",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_CANTOPEN: "the file or its directory cannot be opened",
    sqlite3.SQLITE_CORRUPT: "the file is damaged",
    sqlite3.SQLITE_NOTADB: "the file is not a SQLite database",
    sqlite3.SQLITE_PERM: "access to the file was denied",
}


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def leaves_broken(exc: sqlite3.Error) -> bool:
    """Whether the connection that raised `exc` should be closed and opened again."""
    if _code(exc) in _REOPEN_CODES:
        return True
    text = str(exc).lower()
    return any(t in text for t in _REOPEN_TEXTS)


def describe(path: str, doing: str, exc: sqlite3.Error, busy_timeout: float) -> str:
    """One line: what failed, on which file, SQLite's words, and what they mean."""
    code = _code(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        hint = f"another connection held the lock for {busy_timeout:.0f}s"
    else:
        hint = _HINTS.get(code, "") if code is not None else ""
    if not hint and "readonly database" in str(exc):
        hint = _HINTS[sqlite3.SQLITE_READONLY]
    return f"SQLite {doing} failed on {path}: {_first_line(exc)}" + (f" ({hint})" if hint else "")


class DatabaseFile:
    """The database file's identity and writability, looked at cheaply and not too often."""

    def __init__(self, path: str) -> None:
        self.path = path  # as given: messages name it the way the user wrote it
        self.special = path == ":memory:" or path.startswith("file:")
        self.absolute = path if self.special else os.path.abspath(path)
        self.identity: tuple[int, int] | None = None
        self.lost: str | None = None  # what happened to the file, once it did
        self._identity_checked = 0.0
        self._writable: tuple[str | None, float] = (None, float("-inf"))

    def target(self) -> tuple[str, bool]:
        """What sqlite3.connect opens, and whether it is a URI. Once the file has been
        opened, the path must exist (mode=rw): never create a new file in its place."""
        if self.special:
            return self.path, self.path.startswith("file:")
        mode = "rw" if self.identity is not None else "rwc"
        return f"{Path(self.absolute).as_uri()}?mode={mode}", True

    def remember(self) -> None:
        """Record the identity of the file just opened (first open), or check it."""
        if self.special:
            return
        if self.identity is None:
            try:
                st = os.stat(self.absolute)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
            self.identity = (st.st_dev, st.st_ino)
            self._identity_checked = time.monotonic()
        else:
            self.check(force=True)

    def check(self, *, force: bool = False) -> None:
        """Raise StoreFileReplaced if the file was deleted, renamed or replaced since this
        store first opened it; for good, once it was."""
        if self.lost is not None:
            raise StoreFileReplaced(self.lost)  # a new one each time: raised from any thread
        if self.identity is None:
            return
        now = time.monotonic()
        if not force and now - self._identity_checked < FILE_CHECK_INTERVAL_S:
            return
        self._identity_checked = now
        try:
            st = os.stat(self.absolute)
        except FileNotFoundError:
            what = "was deleted or renamed"
        except OSError:
            return  # cannot look (a transient error, a permission): SQLite will tell
        else:
            if (st.st_dev, st.st_ino) == self.identity:
                return
            what = "was replaced by another file"
        self.lost = (
            f"SQLite database {self.path} {what} while this process was using it: stopping, "
            "since its writes would go to a file no other process sees (restart every "
            "process on the file that should be used)"
        )
        raise StoreFileReplaced(self.lost)

    def unwritable(self, *, force: bool = False) -> str | None:
        """Why the database cannot be written now (None when it can): the file or its -wal
        is not writable (read-only mount, immutable attribute, permissions), or the -wal is
        missing and the directory cannot take it. access(2), cached briefly."""
        reason, checked = self._writable
        now = time.monotonic()
        if self.special or (not force and now - checked < FILE_CHECK_INTERVAL_S):
            return reason
        reason = None
        wal = self.absolute + "-wal"
        if not os.access(self.absolute, os.W_OK):
            reason = f"{self.path} is not writable"
        elif os.path.lexists(wal):
            if not os.access(wal, os.W_OK):
                reason = f"{self.path}-wal is not writable"
        elif not os.access(os.path.dirname(self.absolute) or ".", os.W_OK):
            reason = f"the directory of {self.path} is not writable"
        if reason is not None and not os.path.lexists(self.absolute):
            reason = None  # gone: check() says so, and a first open creates it
        self._writable = (reason, now)
        return reason


@dataclass
class _Held:
    conn: sqlite3.Connection
    # opened while the file could not be written: SQLite opened it read-only, for good
    suspect: bool


class Connections:
    """One connection per thread (sqlite3 objects are not shared), opened on first use and
    reopened after errors that can leave it broken; every write under one in-process lock."""

    def __init__(
        self, path: str, *, busy_timeout: float, configure: Callable[[sqlite3.Connection], None]
    ) -> None:
        self.file = DatabaseFile(path)
        self.busy_timeout = busy_timeout
        self._configure = configure
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here rather than in SQLite's busy handler, which
        # sleeps in steps of milliseconds; other processes still meet busy_timeout.
        self.write_lock = threading.Lock()
        self._closed = False

    @property
    def path(self) -> str:
        return self.file.path

    # -- opening -------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection with the store's settings (also used by the notifier)."""
        self.file.check()
        parent = Path(self.file.absolute).resolve().parent
        if not self.file.special and not parent.is_dir():
            raise StoreUnavailable(
                f"cannot open SQLite database {self.path}: no directory {parent}"
            )
        target, uri = self.file.target()
        try:
            conn = sqlite3.connect(
                target,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=uri,
            )
        except sqlite3.Error as exc:
            self.file.check(force=True)  # gone since the first open: say that instead
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
        try:
            self._configure(conn)
            self.file.remember()
        except sqlite3.Error as exc:
            conn.close()
            self.file.check(force=True)
            raise StoreUnavailable(describe(self.path, "open", exc, self.busy_timeout)) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def get(self) -> sqlite3.Connection:
        """This thread's connection: opened on first use, and again after it was dropped or
        when it was opened read-only and the file is writable again."""
        self.file.check()
        held: _Held | None = getattr(self._local, "held", None)
        # uncached: a few µs per call, only while this thread's connection is suspect (and
        # never in the middle of one of its transactions)
        if (
            held is not None
            and held.suspect
            and not held.conn.in_transaction
            and self.file.unwritable(force=True) is None
        ):
            self.drop(held.conn)
            held = None
        if held is None:
            if self._closed:
                raise StoreUnavailable("store is closed")
            # not writable just before or just after the open: SQLite may have opened it
            # read-only (it falls back to O_RDONLY and stays so)
            before = self.file.unwritable(force=True)
            conn = self.connect()
            suspect = before is not None or self.file.unwritable(force=True) is not None
            held = _Held(conn, suspect=suspect)
            self._local.held = held
            with self._lock:
                self._all.append(conn)
        return held.conn

    def drop(self, conn: sqlite3.Connection) -> None:
        """Close `conn` (this thread's); the next call opens a new one."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.conn is conn:
            self._local.held = None
        with self._lock, contextlib.suppress(ValueError):
            self._all.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    # -- errors --------------------------------------------------------------------------
    def failure(self, conn: sqlite3.Connection, exc: sqlite3.Error, doing: str) -> StoreUnavailable:
        """The error to raise for `exc`; drops `conn` when `exc` may have broken it."""
        if leaves_broken(exc):
            self.drop(conn)
        try:
            self.file.check(force=True)
        except StoreFileReplaced as lost:
            return lost
        if "no such table" in str(exc):
            return StoreUnavailable(f"{self.path} has no Conveyor schema: run `conveyor migrate`")
        return StoreUnavailable(describe(self.path, doing, exc, self.busy_timeout))

    def rollback(self, conn: sqlite3.Connection) -> None:
        """Roll back if a transaction is open; a connection that cannot is dropped."""
        if not conn.in_transaction:
            return  # SQLite rolled back on its own (or nothing was begun)
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self.drop(conn)  # closing it rolls back what is left

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front, so it
        waits (busy_timeout) instead of failing later on a read→write upgrade."""
        conn = self.get()
        with self.write_lock:
            self.rollback(conn)  # never inside a transaction some failure left open
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.rollback(conn)
                raise self.failure(conn, exc, "write (BEGIN IMMEDIATE)") from None
            try:
                yield conn
            except sqlite3.Error as exc:
                self.rollback(conn)
                raise self.failure(conn, exc, "write") from None
            except BaseException:
                self.rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.rollback(conn)
                raise self.failure(conn, exc, "write (COMMIT)") from None

    @contextmanager
    def autocommit(self) -> Iterator[sqlite3.Connection]:
        """Statements in their own implicit transactions, under the in-process write lock:
        a single DML statement takes SQLite's write lock when it starts and is atomic."""
        conn = self.get()
        with self.write_lock:
            try:
                yield conn
            except sqlite3.Error as exc:
                self.rollback(conn)
                raise self.failure(conn, exc, "write") from None

    def write_one(self, query: str, params: dict[str, object]) -> list[sqlite3.Row]:
        """`autocommit` for one statement, without a generator's cost (the claim's path)."""
        conn = self.get()
        with self.write_lock:
            try:
                rows: list[sqlite3.Row] = conn.execute(query, params).fetchall()
            except sqlite3.Error as exc:
                self.rollback(conn)
                raise self.failure(conn, exc, "write") from None
        return rows

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        conn = self.get()
        try:
            yield conn
        except sqlite3.Error as exc:
            self.rollback(conn)
            raise self.failure(conn, exc, "read") from None

    def read(self, query: str, params: dict[str, object] | None = None) -> list[sqlite3.Row]:
        """`reading` for one query, without a generator's cost."""
        conn = self.get()
        try:
            rows: list[sqlite3.Row] = conn.execute(query, params or {}).fetchall()
        except sqlite3.Error as exc:
            self.rollback(conn)
            raise self.failure(conn, exc, "read") from None
        return rows

    # -- health --------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Raise StoreUnavailable unless the file is the one first opened and can be
        written now (for /readyz; a stat and an access(2) or two)."""
        self.file.check(force=True)
        reason = self.file.unwritable(force=True)
        if reason is not None:
            raise StoreUnavailable(f"SQLite database {self.path} cannot be written: {reason}")

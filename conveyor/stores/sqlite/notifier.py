"""SqliteNotifier: wakes fetchers on local enqueues at once and on other processes'
commits within one poll period, by watching PRAGMA data_version. SqliteFinishListener
watches it the same way for the process's `Conveyor.wait` calls."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from conveyor.errors import StoreFileReplaced, StoreUnavailable
from conveyor.stores.base import FinishListener, Notifier

if TYPE_CHECKING:
    from conveyor.stores.sqlite.store import SqliteStore

# SPEC: an idle worker starts a job enqueued by another process within 50 ms; a poll costs
# microseconds, so poll often and keep the start latency near the claim time.
POLL_INTERVAL_S = 0.002
# While the database cannot be opened, reconnect at most this often (not every 2 ms).
RETRY_MAX_S = 0.5
# At most this often, a stat: is the file still the one first opened?
IDENTITY_EVERY_S = 0.5
# Conveyor.wait answers within 100 ms of a finish: a look every 5 ms, taken only while some
# thread of the process waits (the waiters' thread sleeps otherwise).
WAIT_POLL_INTERVAL_S = 0.005
# A running job is cancelled within a second (SPEC §6): the cancel signal is read at most
# this often, not after every commit a busy fleet makes (one query per 2 ms poll otherwise).
CANCEL_POLL_S = 0.05


class DataVersionPoll:
    """A connection of its own, and whether the file changed since the previous look:
    `PRAGMA data_version` changes whenever *another* connection commits (of this process
    or any other). Shared by the notifier and the waiters' listener; used from one thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.conn: sqlite3.Connection | None = None
        self._last: int | None = None
        self._failed = False
        self._identity_at = time.monotonic()

    def changed(self) -> bool | None:
        """One look. True when another connection committed since the previous look, and
        at the first good look after a failed one (commits made meanwhile went unseen, and
        a new connection counts data_version afresh); False when not, and at the very first
        look; None when the file cannot be read now (the connection is dropped: look again
        later, less often). Every IDENTITY_EVERY_S it checks that the file is still the one
        first opened: StoreFileReplaced, for good, when not."""
        try:
            now = time.monotonic()
            if now - self._identity_at >= IDENTITY_EVERY_S:
                self._identity_at = now
                self._store.check_identity()
            if self.conn is None:
                self.conn = self._store.connect()
            version = self._store.data_version(self.conn)
        except StoreFileReplaced:
            raise
        except Exception:  # the store is unreachable for now
            self.close()
            self._failed = True
            return None
        changed = self._failed or (self._last is not None and version != self._last)
        self._last, self._failed = version, False
        return changed

    def close(self) -> None:
        conn, self.conn, self._last = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class SqliteNotifier(Notifier):
    """data_version changes on every commit by *another* connection, including this
    process's own workers; a spurious wake-up costs one empty claim, a missed one costs
    up to FETCH_INTERVAL, so the poller errs towards waking."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__()
        self._store = store
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # A plain thread: the poll is a few microseconds, and keeping it off the event loop
        # and off the store executor means a busy pool never delays a wake-up.
        self._thread = threading.Thread(
            target=self._poll, name="conveyor-sqlite-notifier", daemon=True
        )
        self._thread.start()

    def _poll(self) -> None:
        files = DataVersionPoll(self._store)
        seen: int | None = None  # the cancel signal last read (see cancel_signal)
        unread = False  # a commit since the signal was last read
        read_at = 0.0
        pause = POLL_INTERVAL_S
        try:
            while True:
                # a plain sleep: an Event.wait with a timeout costs the process twice its CPU
                # at 500 looks a second, and `stop` can wait a poll period
                time.sleep(pause)
                if self._stopping.is_set():
                    break
                try:
                    changed = files.changed()
                except StoreFileReplaced:
                    # for good: the process stops (conveyor/process.py), and polling a file
                    # nobody else writes would only wake the fetcher in vain
                    self.wake_local()
                    break
                if changed is None:  # the store is unreachable for now: try again, less often
                    pause = min(pause * 2, RETRY_MAX_S)
                    continue
                # back after a failure, changed is True: look for work once
                pause = POLL_INTERVAL_S
                conn = files.conn
                assert conn is not None
                if changed:
                    self.wake_local()
                    unread = True
                if not self._cancel_listeners:
                    continue
                now = time.monotonic()
                if seen is None or (unread and now - read_at >= CANCEL_POLL_S):
                    signal = self._store.cancel_signal(conn)
                    if seen is not None and signal != seen:
                        self._job_cancelled(None)
                    seen, unread, read_at = signal, False, now
        finally:
            files.close()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)


class SqliteFinishListener(FinishListener):
    """Any commit may have finished jobs: `wait` answers None (re-check every waiter) when
    the file changed. The change is seen within WAIT_POLL_INTERVAL_S of the commit."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._files = DataVersionPoll(store)
        self._pause = WAIT_POLL_INTERVAL_S

    def connect(self) -> None:
        # the first look: changes count from here
        if self._files.changed() is None:
            raise StoreUnavailable(f"{self._store!r}: cannot read the file to wait on jobs")

    def wait(self, timeout: float) -> frozenset[int] | None:
        deadline = time.monotonic() + timeout
        while True:
            changed = self._files.changed()
            if changed:
                self._pause = WAIT_POLL_INTERVAL_S
                return None
            if changed is None:  # unreachable for now: look again, less often
                self._pause = min(self._pause * 2, RETRY_MAX_S)
            else:
                self._pause = WAIT_POLL_INTERVAL_S
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return frozenset()
            time.sleep(min(self._pause, remaining))

    def close(self) -> None:
        self._files.close()

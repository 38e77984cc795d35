"""SqliteNotifier: wakes fetchers on local enqueues at once and on other processes'
commits within one poll period, by watching PRAGMA data_version."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from typing import TYPE_CHECKING

from conveyor.errors import StoreFileReplaced
from conveyor.stores.base import Notifier

if TYPE_CHECKING:
    from conveyor.stores.sqlite.store import SqliteStore

# SPEC: an idle worker starts a job enqueued by another process within 50 ms; a poll costs
# microseconds, so poll often and keep the start latency near the claim time.
POLL_INTERVAL_S = 0.002
# While the database cannot be opened, reconnect at most this often (not every 2 ms).
RETRY_MAX_S = 0.5
# Every this many polls (half a second), a stat: is the file still the one first opened?
IDENTITY_EVERY = 250


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
        conn: sqlite3.Connection | None = None
        last: int | None = None
        seen: int | None = None  # the cancel signal last read (see cancel_signal)
        pause = POLL_INTERVAL_S
        polls = 0
        while not self._stopping.wait(pause):
            polls += 1
            try:
                if polls % IDENTITY_EVERY == 0:
                    self._store.check_identity()
                if conn is None:
                    conn = self._store.connect()
                version = self._store.data_version(conn)
            except StoreFileReplaced:
                # for good: the process stops (conveyor/process.py), and polling a file
                # nobody else writes would only wake the fetcher in vain
                self.wake_local()
                break
            except Exception:  # the store is unreachable for now: try again, less often
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn, last = None, None
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            if pause != POLL_INTERVAL_S:
                # back after a failure: commits made meanwhile went unseen (and a new
                # connection counts data_version afresh), so look for work once
                pause = POLL_INTERVAL_S
                self.wake_local()
            if last is not None and version != last:
                self.wake_local()
                if self._cancel_listeners:
                    signal = self._store.cancel_signal(conn)
                    if seen is not None and signal != seen:
                        self._job_cancelled(None)
                    seen = signal
            elif seen is None and self._cancel_listeners:
                seen = self._store.cancel_signal(conn)
            last = version
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

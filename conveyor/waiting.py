"""Waiting for jobs to finish (SPEC §8: `app.wait`, `app.wait_async`, GET /jobs/{id}?wait=S).

One `FinishWatch` per app, started on the first wait, holds every waiter of the process by
job id, and one thread of its own answers them all: it listens to the store's finish
listener (PostgreSQL: LISTEN conveyor_finished; SQLite: PRAGMA data_version) and, when it
hears something, reads the waited-for jobs among what it heard in one query and resolves
those that finished. It also reads every waited-for job once a second, whatever it heard:
a lost notification, or a listener that is down, delays an answer by a second at most.
A waiter registers before it reads its job's status, so a finish between the two cannot
be missed: it happens either before the read (which sees it) or after the registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import Protocol

from conveyor.errors import InvalidJob, JobNotFound, StoreFileReplaced, StoreUnavailable
from conveyor.jobs import Job
from conveyor.stores.base import Store

log = logging.getLogger("conveyor.wait")

# Every waited-for job is read again at least this often, whatever was heard (SPEC §8: no
# polling faster than once a second).
RECHECK_S = 1.0
# The longest the watch's thread blocks in its listener at a time: how soon it notices stop.
SLICE_S = 0.2
# Ids per read (one statement's parameters stay small however many threads wait).
CHECK_BATCH = 1000
# How long the first wait of an app gives the listener to connect before it relies on
# the once-a-second re-read alone.
READY_TIMEOUT_S = 10.0
# GET /jobs/{id}?wait=S: the longest S (SPEC §8).
HTTP_WAIT_MAX_S = 60.0
# threading.Event.wait refuses timeouts past threading.TIMEOUT_MAX: long waits go in steps.
_STEP_S = 3600.0

Outcome = Job | BaseException


def wait_timeout(timeout: object) -> float:
    """A wait's timeout in seconds: a finite number, 0 or more; InvalidJob otherwise."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidJob(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidJob("timeout must be a finite number of seconds, 0 or more")
    return seconds


def timed_out(job_id: int, timeout: float) -> TimeoutError:
    return TimeoutError(f"job {job_id} did not finish within {timeout:g} s")


class Waiter(Protocol):
    """One call waiting for `job_id`; `resolve` is called at most once, from any thread."""

    job_id: int

    def resolve(self, outcome: Outcome) -> None: ...


class ThreadWaiter:
    """A waiter that blocks its own thread (`Conveyor.wait`)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._done = threading.Event()
        self._outcome: Outcome | None = None

    def resolve(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._done.set()

    def wait(self, timeout: float) -> Job | None:
        """The finished job, or None when `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while not self._done.wait(min(max(deadline - time.monotonic(), 0.0), _STEP_S)):
            if time.monotonic() >= deadline:
                return None
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome


class AsyncWaiter:
    """A waiter that is an asyncio future of its loop (`Conveyor.wait_async`): resolving it
    only schedules a callback on that loop; no thread is held while it waits."""

    def __init__(self, job_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.job_id = job_id
        self._loop = loop
        self.future: asyncio.Future[Job] = loop.create_future()

    def resolve(self, outcome: Outcome) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits
            self._loop.call_soon_threadsafe(self._settle, outcome)

    def _settle(self, outcome: Outcome) -> None:
        if self.future.done():  # the await timed out or was cancelled
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class FinishWatch:
    """The waiters of one app by job id, and the thread that answers them. Started by
    construction; `ready` waits for its listener's first connection attempt; `stop` ends
    the thread and fails the waiters left with StoreUnavailable."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._listener = store.finish_listener()
        self._waiters: dict[int, set[Waiter]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a waiter came, or stop
        self._stopping = False
        self._ready = threading.Event()
        self._unavailable = False  # the last read failed (logged once per outage)
        self._thread = threading.Thread(target=self._run, name="conveyor-finish-watch", daemon=True)
        self._thread.start()

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    def ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the listener has tried its first connection (or after `timeout`)."""
        self._ready.wait(timeout)

    def watch(self, waiter: Waiter) -> None:
        """Register `waiter`: from now on its job finishing resolves it."""
        with self._lock:
            if self._stopping:
                raise StoreUnavailable(f"the app was closed while waiting for job {waiter.job_id}")
            self._waiters.setdefault(waiter.job_id, set()).add(waiter)
            self._changed.notify()

    def forget(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.job_id]

    def waiting_for(self) -> set[int]:
        """The ids some waiter waits for (for tests and introspection)."""
        with self._lock:
            return set(self._waiters)

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stopping = True
            left = [w for waiters in self._waiters.values() for w in waiters]
            self._waiters.clear()
            self._changed.notify_all()
        for waiter in left:
            waiter.resolve(
                StoreUnavailable(f"the app was closed while waiting for job {waiter.job_id}")
            )
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the watch's thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._listener.connect()
        except StoreUnavailable as exc:
            log.warning(
                "cannot listen for finished jobs (%s); waiters re-read their jobs every "
                "second until it can",
                exc,
            )
        except Exception:
            log.exception("cannot listen for finished jobs; waiters re-read every second")
        finally:
            self._ready.set()
        checked = time.monotonic()  # the last read of every waited-for job
        try:
            while self._idle():
                pause = min(SLICE_S, max(0.0, checked + RECHECK_S - time.monotonic()))
                heard = self._hear(pause)
                now = time.monotonic()
                if heard is None or now >= checked + RECHECK_S:
                    checked = now
                    self._check(self._wanted(None))
                elif heard:
                    self._check(self._wanted(heard))
        except Exception:  # a bug: say so, and fail the waiters rather than leave them hanging
            log.exception("the thread answering waits for jobs failed")
            self.stop()
        finally:
            self._listener.close()

    def _idle(self) -> bool:
        """Sleep while nobody waits (unless the listener must keep reading); False on stop."""
        with self._lock:
            while not (self._waiters or self._listener.drains_when_idle or self._stopping):
                self._changed.wait()
            return not self._stopping

    def _hear(self, timeout: float) -> frozenset[int] | None:
        try:
            return self._listener.wait(timeout)
        except StoreFileReplaced as exc:
            self._fail_all(exc)
        except Exception:
            log.exception("listening for finished jobs failed")
        self._pause(RECHECK_S)
        return frozenset()

    def _wanted(self, heard: frozenset[int] | None) -> list[int]:
        with self._lock:
            if heard is None:
                return list(self._waiters)
            return [job_id for job_id in heard if job_id in self._waiters]

    def _check(self, job_ids: list[int]) -> None:
        """Read the jobs in one query per CHECK_BATCH ids; resolve the finished and absent."""
        for start in range(0, len(job_ids), CHECK_BATCH):
            try:
                found = self._store.finished_among(job_ids[start : start + CHECK_BATCH])
            except StoreFileReplaced as exc:
                self._fail_all(exc)
                return
            except StoreUnavailable as exc:
                if not self._unavailable:
                    log.warning("cannot read the jobs waited for (%s); trying every second", exc)
                    self._unavailable = True
                return
            if self._unavailable:
                log.info("reading the jobs waited for works again")
                self._unavailable = False
            for job_id, job in found.items():
                self._settle(job_id, job)

    def _settle(self, job_id: int, job: Job | None) -> None:
        with self._lock:
            waiters = self._waiters.pop(job_id, ())
        for waiter in waiters:
            waiter.resolve(job if job is not None else JobNotFound(f"job {job_id} not found"))

    def _fail_all(self, exc: StoreUnavailable) -> None:
        with self._lock:
            left = [w for waiters in self._waiters.values() for w in waiters]
            self._waiters.clear()
        for waiter in left:
            waiter.resolve(type(exc)(str(exc)))

    def _pause(self, seconds: float) -> None:
        with self._lock:
            if not self._stopping:
                self._changed.wait(seconds)

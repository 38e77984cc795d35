"""The leases a worker process holds: renewed from a thread of their own, watched so that
none expires while its job still runs.

A job's lease is held from its claim until the last write of its run (its outcome, its
hand-back, or the end of a cancelled run) is stored. Renewals run on a dedicated thread, not
on the event loop: an `async def` task that blocks the loop must not let the leases lapse,
or another worker would recover its job and start it a second time (SPEC §6). The same
thread writes what tasks report with `progress()` (at most about once a second), and renews
at once when the store says a job a run holds was cancelled, so that the run learns of it
within a second. The event loop hears what a renewal found through callbacks: `on_lost`
(the lease is gone) and `on_stop` (the job is no longer processing: stop the run).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from conveyor.context import JobContext
from conveyor.jobs import LeaseRef
from conveyor.stores import Store

log = logging.getLogger("conveyor.worker")

# ctx.progress() is written at most this often per process (SPEC §6: about once a second)
PROGRESS_INTERVAL_S = 1.0


@dataclass(slots=True)
class _Held:
    ref: LeaseRef
    # monotonic time until which the lease certainly holds: lease seconds after the start of
    # the last claim or heartbeat call that took or renewed it (the store's deadline, counted
    # from when the call reached it, can only be later)
    until: float
    context: JobContext | None


class Leases:
    def __init__(
        self,
        store: Store,
        *,
        lease: float,
        on_lost: Callable[[LeaseRef], None],
        on_stop: Callable[[LeaseRef], None],
        beat: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._on_lost = on_lost
        self._on_stop = on_stop
        # the worker's registry heartbeat (SPEC §9): one small write per renewal round,
        # whether or not the process holds any lease
        self._beat = beat
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._renew_now = threading.Event()  # a cancel hint: renew everything at once
        self._progressed: set[int] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def interval(self) -> float:
        # three renewals per lease: one late or failed heartbeat never loses a lease
        return self._lease / 3

    # -- called from the event loop (or, for progress and hints, any thread) -------------
    def hold(self, ref: LeaseRef, until: float, context: JobContext | None = None) -> None:
        self.hold_all([(ref, context)], until)

    def hold_all(self, runs: list[tuple[LeaseRef, JobContext | None]], until: float) -> None:
        """Renew these claims (a fetch's worth, under one lock) until dropped."""
        with self._lock:
            for ref, context in runs:
                self._held[ref.job_id] = _Held(ref, until, context)

    def drop(self, ref: LeaseRef) -> None:
        """Stop renewing this claim (not a later claim of the same job)."""
        self.drop_all([ref])

    def drop_all(self, refs: list[LeaseRef]) -> None:
        with self._lock:
            for ref in refs:
                held = self._held.get(ref.job_id)
                if held is not None and held.ref == ref:
                    del self._held[ref.job_id]

    def held_until(self, job_id: int) -> float | None:
        with self._lock:
            held = self._held.get(job_id)
            return None if held is None else held.until

    def refs(self) -> list[LeaseRef]:
        with self._lock:
            return [held.ref for held in self._held.values()]

    def progressed(self, context: JobContext) -> None:
        """A task reported progress: written with the next renewal, within a second."""
        with self._lock:
            self._progressed.add(context.job.id)

    def cancel_hint(self, job_id: int | None) -> None:
        """The store says a job a run holds was cancelled (None: some job): if it may be
        one of ours, renew now, which reports it."""
        if job_id is not None:
            with self._lock:
                if job_id not in self._held:
                    return
        self._renew_now.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._renew_now.set()
        if self._thread is not None:
            # a renewal in flight ends within the store's own timeouts
            await asyncio.to_thread(self._thread.join, 10.0)

    # -- the heartbeat thread -------------------------------------------------------------
    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stopping.is_set():
            wait = min(due - time.monotonic(), PROGRESS_INTERVAL_S)
            hinted = self._renew_now.wait(max(wait, 0.0))
            if self._stopping.is_set():
                return
            if hinted:
                self._renew_now.clear()
            if hinted or time.monotonic() >= due:
                due = time.monotonic() + self.interval
                self.renew()
                if self._beat is not None:
                    self._beat()
            elif self._progressed:
                self.renew(only_progressed=True)

    def renew(self, *, only_progressed: bool = False) -> None:
        """Renew every held lease (or only those with progress to write) in one store
        call; report lost ones and runs to stop."""
        with self._lock:
            progressed, self._progressed = self._progressed, set()
            held = [
                h for h in self._held.values() if not only_progressed or h.ref.job_id in progressed
            ]
        if not held:
            return
        refs = [h.ref for h in held]
        progress = {}
        for h in held:
            report = h.context.take_progress() if h.context is not None else None
            if report is not None:
                progress[h.ref.job_id] = report
        asked = time.monotonic()
        try:
            renewal = self._store.heartbeat(
                refs, lease=timedelta(seconds=self._lease), progress=progress
            )
        except Exception as exc:
            log.warning("heartbeat failed for %d jobs: %s", len(refs), exc)
            return
        until = asked + self._lease
        lost: list[LeaseRef] = []
        stop: list[LeaseRef] = []
        with self._lock:
            for ref in refs:
                current = self._held.get(ref.job_id)
                # A newer claim of the same job (a retry this process took once the cancelled
                # run's lease ended) is not what this renewal judged: leave it alone.
                if current is None or current.ref != ref:
                    continue
                if ref.job_id in renewal.lost:
                    del self._held[ref.job_id]
                    lost.append(ref)
                else:
                    current.until = max(current.until, until)
                    if ref.job_id in renewal.stop:
                        stop.append(ref)
        for ref in lost:
            self._call_soon(self._on_lost, ref)
        for ref in stop:
            self._call_soon(self._on_stop, ref)

    def _call_soon(self, callback: Callable[[LeaseRef], None], ref: LeaseRef) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, ref)
        except RuntimeError:  # the loop closed meanwhile: the process is exiting
            pass


class LeaseWatchdog:
    """Stops a job before its lease can expire when the lease could not be renewed (the
    store unreachable, a partition): past that moment another worker may recover and start
    the job, and two runs would overlap. Checks often enough to act before the deadline."""

    def __init__(
        self,
        leases: Leases,
        running: Callable[[], list[int]],
        on_expiring: Callable[[int], None],
    ) -> None:
        self._leases = leases
        self._running = running
        self._on_expiring = on_expiring
        self.period = min(leases.interval / 2, 1.0)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            for job_id in self._running():
                until = self._leases.held_until(job_id)
                if until is not None and now + self.period >= until:
                    self._on_expiring(job_id)

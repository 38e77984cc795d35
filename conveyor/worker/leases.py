"""The leases a worker process holds, renewed from a thread of their own.

A job's lease is held from its claim until the last write of its run (its outcome, its
hand-back, or the end of a cancelled run) is stored. Renewals run on a dedicated thread, not
on the event loop: an `async def` task that blocks the loop must not let the leases lapse,
or another worker would recover its job and start it a second time (SPEC §6). The event
loop learns what a renewal found through callbacks (`on_lost`, `on_stop`), and the lease
watchdog reads `held_until` to stop a job whose lease could not be renewed in time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from conveyor.jobs import LeaseRef
from conveyor.stores import Store

log = logging.getLogger("conveyor.worker")


@dataclass(slots=True)
class _Held:
    ref: LeaseRef
    # monotonic time until which the lease certainly holds: lease seconds after the start of
    # the last claim or heartbeat call that took or renewed it (the store's deadline, counted
    # from when the call reached it, can only be later)
    until: float


class Leases:
    def __init__(
        self,
        store: Store,
        *,
        lease: float,
        on_lost: Callable[[int], None],
        on_stop: Callable[[int], None],
    ) -> None:
        self._store = store
        self._lease = lease
        self._on_lost = on_lost
        self._on_stop = on_stop
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def interval(self) -> float:
        # three renewals per lease: one late or failed heartbeat never loses a lease
        return self._lease / 3

    # -- called from the event loop ------------------------------------------------------
    def hold(self, ref: LeaseRef, until: float) -> None:
        with self._lock:
            self._held[ref.job_id] = _Held(ref, until)

    def drop(self, job_id: int) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def held_until(self, job_id: int) -> float | None:
        with self._lock:
            held = self._held.get(job_id)
            return None if held is None else held.until

    def refs(self) -> list[LeaseRef]:
        with self._lock:
            return [held.ref for held in self._held.values()]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            # a renewal in flight ends within the store's own timeouts
            await asyncio.to_thread(self._thread.join, 10.0)

    # -- the heartbeat thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.renew()

    def renew(self) -> None:
        """Renew every held lease in one store call; report lost ones and runs to stop."""
        held = self.refs()
        if not held:
            return
        asked = time.monotonic()
        try:
            renewal = self._store.heartbeat(held, lease=timedelta(seconds=self._lease))
        except Exception as exc:
            log.warning("heartbeat failed for %d jobs: %s", len(held), exc)
            return
        until = asked + self._lease
        with self._lock:
            for ref in held:
                current = self._held.get(ref.job_id)
                if current is None or current.ref != ref:
                    continue
                if ref.job_id in renewal.lost:
                    del self._held[ref.job_id]
                else:
                    current.until = max(current.until, until)
        for job_id in renewal.lost:
            self._call_soon(self._on_lost, job_id)
        for job_id in renewal.stop:
            self._call_soon(self._on_stop, job_id)

    def _call_soon(self, callback: Callable[[int], None], job_id: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, job_id)
        except RuntimeError:  # the loop closed meanwhile: the process is exiting
            pass

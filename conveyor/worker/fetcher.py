"""The fetcher: claims `min(free slots, fetch_limit)` jobs at a time, so no claimed job
waits in a local buffer while its lease runs, and hands each to a slot. Outcomes ready at
that moment ride in the claim's transaction (one commit, not two). When a claim returns
fewer jobs than asked it sleeps on the notifier (a local or another process's enqueue, a
freed slot, a retry coming due) for at most `fetch_interval`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from conveyor.jobs import Finish, Job, JobStatus
from conveyor.stores import Notifier, Store
from conveyor.stores.base import LoopClaims
from conveyor.worker.completer import Completer
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


class Slots(Protocol):
    """What the fetcher needs of the pool."""

    @property
    def free(self) -> int: ...

    async def freed(self) -> None:
        """Return once a slot is free (or the pool is stopping)."""


class Fetcher:
    def __init__(
        self,
        *,
        store: Store,
        calls: StoreCalls,
        notifier: Notifier,
        completer: Completer,
        slots: Slots,
        start: Callable[[list[Job], float], None],
        worker_id: str,
        queues: list[str] | None,
        fetch_limit: int,
        fetch_interval: float,
        lease: float,
        stopping: asyncio.Event,
    ) -> None:
        self._store = store
        self._calls = calls
        self._notifier = notifier
        self._completer = completer
        self._slots = slots
        self._start = start
        self._worker_id = worker_id
        self._queues = queues
        self._fetch_limit = fetch_limit
        self._fetch_interval = fetch_interval
        self._lease = lease
        self._stopping = stopping

    async def run(self) -> None:
        """Claim and start jobs until the pool stops."""
        on_loop = self._store.loop_claims()
        try:
            await self._run(on_loop)
        finally:
            if on_loop is not None:
                await on_loop.close()

    async def _run(self, on_loop: LoopClaims | None) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping.is_set():
            free = self._slots.free
            if free == 0:
                await self._slots.freed()
                continue
            limit = min(free, self._fetch_limit)
            finished = self._completer.take()
            asked = time.monotonic()
            try:
                applied, jobs = await self._claim(on_loop, [d.finish for d in finished], limit)
            except Exception as exc:
                self._completer.give_back(finished)
                log.warning("claim failed, retrying in %.1fs: %s", backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self._completer.report(finished, applied)
            if jobs:
                # the leases certainly hold until `lease` after the claim was sent
                self._start(jobs, asked + self._lease)
            if len(jobs) < limit and not self._stopping.is_set():
                # Nothing more is due: sleep until an enqueue wakes us, or the poll interval.
                await self._notifier.wait(self._fetch_interval)

    async def _claim(
        self, on_loop: LoopClaims | None, finishes: list[Finish], limit: int
    ) -> tuple[dict[int, JobStatus], list[Job]]:
        """On the loop where the store offers it (Store.loop_claims), else on a store thread."""
        lease = timedelta(seconds=self._lease)
        if on_loop is not None:
            return await on_loop.finish_and_claim(
                finishes, worker=self._worker_id, queues=self._queues, limit=limit, lease=lease
            )
        return await self._calls.hot(
            self._store.finish_and_claim,
            finishes,
            worker=self._worker_id,
            queues=self._queues,
            limit=limit,
            lease=lease,
        )

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

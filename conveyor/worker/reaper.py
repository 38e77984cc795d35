"""Recovery: jobs whose lease expired (their worker died or stalled) go back to pending, or
to failed once their attempts are used up. Every worker process runs it; the guarded UPDATE
makes concurrent reapers harmless (a row is recovered once)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from conveyor.metrics import Metrics
from conveyor.stores import Store
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

BATCH = 1000


class Reaper:
    def __init__(
        self,
        store: Store,
        calls: StoreCalls,
        metrics: Metrics,
        *,
        interval: float,
        on_requeued: Callable[[], None],
    ) -> None:
        self._store = store
        self._calls = calls
        self._metrics = metrics
        self._on_requeued = on_requeued
        # a dead worker's job is back within lease + interval, about one lease period
        self.interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                recovered = await self._calls(self._store.recover_expired, limit=BATCH)
            except Exception as exc:
                log.warning("recovering expired leases failed: %s", exc)
                continue
            if recovered.count:
                self._metrics.jobs_recovered(recovered.count)
                log.warning(
                    "recovered %d jobs whose lease expired (requeued %s, failed %s)",
                    recovered.count,
                    recovered.requeued,
                    recovered.failed,
                )
                if recovered.requeued:
                    self._on_requeued()

"""Recovery: jobs whose lease expired (their worker died or stalled) go back to pending, or
to failed once their attempts are used up. Every worker process runs it; the guarded UPDATE
makes concurrent reapers harmless (a row is recovered once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from conveyor.fleet import KEEP_MINUTES
from conveyor.metrics import Metrics
from conveyor.stores import Store
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

BATCH = 1000
# How often the reaper also deletes old per-minute aggregates (and folds PostgreSQL's count
# shards of sessions that are gone): Store.compact_stats.
COMPACT_EVERY_S = 60.0


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
        compacted = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            if time.monotonic() - compacted >= COMPACT_EVERY_S:
                compacted = time.monotonic()
                await self._compact()
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

    async def _compact(self) -> None:
        try:
            await self._calls(self._store.compact_stats, keep=KEEP_MINUTES)
        except Exception as exc:
            log.warning("compacting the per-minute aggregates failed: %s", exc)

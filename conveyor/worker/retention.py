"""Retention (SPEC §7): finished jobs are deleted once they are older than their status's
retention, by one process of the fleet at a time, in short batches.

Every `serve` and `worker` process runs this service. Each round (shortly after start, then
every `interval`) it asks the store for the leadership of ROLE (`Store.try_lead`: a row with
a holder and a deadline on the store's clock, never the process's own). The process that
holds it prunes; the others only ask again at their next round. The leader keeps the role
from round to round (its deadline outlasts the interval), renews it between batches of a
long prune, and gives it up when it stops, so that another process takes over at its next
round; a leader that died is replaced once its deadline has passed (within ttl + interval).

Each batch is one short transaction of at most BATCH rows (`Store.prune(limit=…)`), and the
service sleeps PAUSE_S between batches, so claims and outcomes of the workers go on between
them: a backlog of a million rows is pruned over a few minutes rather than in one long lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from conveyor.jobs import JobStatus
from conveyor.settings import DEFAULT_RETAIN_CANCELLED, DEFAULT_RETAIN_DONE, DEFAULT_RETAIN_FAILED
from conveyor.stores import Store
from conveyor.validation import parse_retention
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.retention")

ROLE = "retention"
# SPEC §7's defaults, from settings.py like every default
DEFAULT_RETENTION: dict[JobStatus, timedelta | None] = {
    JobStatus.DONE: parse_retention(DEFAULT_RETAIN_DONE),
    JobStatus.CANCELLED: parse_retention(DEFAULT_RETAIN_CANCELLED),
    JobStatus.FAILED: parse_retention(DEFAULT_RETAIN_FAILED),
}
# The first round runs this long after start (the pool is up, its first claims are made),
# later rounds every interval: a quarter of the shortest retention, so that a job is deleted
# within about 1.25 times its retention, between 1 s and 60 s.
FIRST_ROUND_S = 2.0
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 60.0
# The leader's deadline: it outlasts two rounds, so a live leader keeps the role, and a dead
# one is replaced within ttl + interval.
MIN_TTL_S = 30.0
# Rows per batch (one transaction each), and the pause between batches in which the
# workers' own writes go first. Measured (docs/performance.md, "Retention"): a batch of 1,000
# finished jobs takes about 2 ms on SQLite (its write lock) and 5 ms on PostgreSQL, 5,000
# (the CLI's `prune` batch) 10-20 ms on both.
BATCH = 1000
PAUSE_S = 0.02
# How long a stopping process waits to give the role up before exiting anyway.
RESIGN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RetentionConfig:
    """How long finished jobs are kept, per status; None keeps them for ever."""

    done: timedelta | None = DEFAULT_RETENTION[JobStatus.DONE]
    cancelled: timedelta | None = DEFAULT_RETENTION[JobStatus.CANCELLED]
    failed: timedelta | None = DEFAULT_RETENTION[JobStatus.FAILED]

    @classmethod
    def of(cls, retention: dict[JobStatus, timedelta | None]) -> RetentionConfig:
        return cls(
            done=retention[JobStatus.DONE],
            cancelled=retention[JobStatus.CANCELLED],
            failed=retention[JobStatus.FAILED],
        )

    @property
    def by_status(self) -> dict[JobStatus, timedelta]:
        """The statuses that are pruned, with their retention."""
        ages = {
            JobStatus.DONE: self.done,
            JobStatus.CANCELLED: self.cancelled,
            JobStatus.FAILED: self.failed,
        }
        return {status: age for status, age in ages.items() if age is not None}

    @property
    def interval(self) -> float:
        ages = self.by_status.values()
        if not ages:
            return MAX_INTERVAL_S
        shortest = min(ages).total_seconds()
        return min(max(shortest / 4, MIN_INTERVAL_S), MAX_INTERVAL_S)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=max(3 * self.interval, MIN_TTL_S))

    def describe(self) -> str:
        return ", ".join(
            f"{status.value} {_age(getattr(self, status.value))}"
            for status in (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED)
        )


def _age(age: timedelta | None) -> str:
    if age is None:
        return "forever"
    seconds = age.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Retention:
    """The service: `run()` until cancelled (the pool cancels it when it stops)."""

    def __init__(
        self,
        store: Store,
        calls: StoreCalls,
        config: RetentionConfig,
        *,
        holder: str,
        first_round: float = FIRST_ROUND_S,
    ) -> None:
        self._store = store
        self._calls = calls
        self.config = config
        self.holder = holder
        self._first_round = first_round
        self.leading = False

    async def run(self) -> None:
        ages = self.config.by_status
        if not ages:
            log.info("retention: finished jobs are kept for ever (nothing to prune)")
            return
        try:
            await asyncio.sleep(self._first_round)
            while True:
                try:
                    await self.round(ages)
                except Exception as exc:  # the store is down: try again next round
                    log.warning("retention: pruning failed: %s", exc)
                await asyncio.sleep(self.config.interval)
        finally:
            if self.leading:
                await self._resign()

    async def round(self, ages: dict[JobStatus, timedelta]) -> dict[JobStatus, int]:
        """One round: prune each status past its retention if this process leads (or can
        take the lead); returns what was deleted."""
        if not await self._lead():
            return {}
        started = time.monotonic()
        renewed = started
        deleted: dict[JobStatus, int] = {}
        for status, age in ages.items():
            while True:
                count = await self._calls(
                    self._store.prune, older_than=age, status=status, limit=BATCH
                )
                deleted[status] = deleted.get(status, 0) + count
                if count < BATCH:
                    break
                await asyncio.sleep(PAUSE_S)  # the workers' writes go first
                if time.monotonic() - renewed > self.config.ttl.total_seconds() / 3:
                    renewed = time.monotonic()
                    if not await self._lead():
                        self._report(deleted, started, stopped=True)
                        return deleted
        self._report(deleted, started)
        return deleted

    async def _lead(self) -> bool:
        try:
            leading = await self._calls(
                self._store.try_lead, ROLE, self.holder, ttl=self.config.ttl
            )
        except Exception as exc:
            log.warning("retention: could not ask the store who leads: %s", exc)
            return False
        if leading != self.leading:
            if leading:
                log.info("retention: %s leads pruning (%s)", self.holder, self.config.describe())
            else:
                log.info("retention: %s no longer leads pruning", self.holder)
        self.leading = leading
        return leading

    def _report(
        self, deleted: dict[JobStatus, int], started: float, *, stopped: bool = False
    ) -> None:
        total = sum(deleted.values())
        if not total and not stopped:
            return
        parts = ", ".join(
            f"{deleted.get(status, 0)} {status.value}"
            for status in (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED)
            if deleted.get(status)
        )
        log.info(
            "retention: pruned %d finished jobs (%s) in %.1fs%s",
            total,
            parts or "none",
            time.monotonic() - started,
            "; stopped: another process leads now" if stopped else "",
        )

    async def _resign(self) -> None:
        """Give the role up so that another process takes it at its next round, not only
        after the deadline; a store that does not answer in time just lets it expire."""
        self.leading = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._calls(self._store.resign, ROLE, self.holder), RESIGN_TIMEOUT_S
            )

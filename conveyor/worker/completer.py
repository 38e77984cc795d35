"""Write job outcomes in batches: one store transaction for every outcome that is ready.

The completer owns every outcome not yet written (its queue, and the batch being written).
While one batch is being written the next accumulates, so under load many completions
share a commit, and when idle a single completion is written at once (no timer). A busy
fetcher takes the queued outcomes itself (`take`) and writes them in its claim's
transaction; the completer's own loop writes whatever the fetcher does not take."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.jobs import Finish, FinishKind, Job, JobStatus, LeaseRef, utcnow
from conveyor.logs import job_fields
from conveyor.metrics import Metrics
from conveyor.stores import Store
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

MAX_BATCH = 500


@dataclass(slots=True)  # one per job; a frozen dataclass costs twice as much to build
class Done:
    """A run that ended: the store's outcome, and what its log line and metrics need."""

    finish: Finish
    job: Job
    slot: str
    duration: float = 0.0
    wait: float = 0.0  # queue wait: run_at (enqueue or due time) to start
    trace: dict[str, str] | None = None  # the run's span's ids, for its "finished" log line


class Completer:
    def __init__(
        self,
        store: Store,
        calls: StoreCalls,
        metrics: Metrics,
        on_written: Callable[[list[LeaseRef]], None],
    ) -> None:
        self._store = store
        self._calls = calls
        self._metrics = metrics
        self._on_written = on_written
        self._queue: list[Done] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, done: Done) -> None:
        self._queue.append(done)
        self._idle.clear()
        self._ready.set()

    def take(self) -> list[Done]:
        """Hand the queued outcomes to a caller that writes them (then calls `report`)."""
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        return batch

    def give_back(self, batch: list[Done]) -> None:
        """The caller could not write `batch`: keep it for the next attempt."""
        self._queue[:0] = batch
        self._idle.clear()
        self._ready.set()

    def report(self, batch: list[Done], applied: dict[int, JobStatus]) -> None:
        for done in batch:
            if done.finish.outcome:  # the end of a cancelled run is no outcome to report
                self._report(done, applied.get(done.job.id))
        self._on_written([done.finish.ref for done in batch])
        if not self._queue:
            self._idle.set()

    async def run(self) -> None:
        backoff = 0.05
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                await self._ready.wait()
                self._ready.clear()
                # let a fetcher woken by the same completions take them into its claim
                await asyncio.sleep(0)
                continue
            batch = self.take()
            try:
                applied = await self._calls.hot(self._store.finish_many, [d.finish for d in batch])
            except Exception as exc:
                # Keep the outcomes and try again; if the store stays away, the leases run out
                # and the jobs are recovered and run again elsewhere (at-least-once).
                log.warning("could not record %d outcomes, retrying: %s", len(batch), exc)
                self.give_back(batch)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self.report(batch, applied)

    def _report(self, done: Done, status: JobStatus | None) -> None:
        finish = done.finish
        snoozed = finish.kind == FinishKind.SNOOZED
        if status is not None and not snoozed:  # a snooze is neither a success nor a failure
            self._metrics.job_finished(done.job, status, done.duration, done.wait)
        if status is not None and finish.error is None and not log.isEnabledFor(logging.INFO):
            return
        fields = {"worker": done.slot, "job": done.job.id, "duration": done.duration}
        if done.trace is not None:  # written after the run's span ended: its ids, given
            fields.update(done.trace)
        if status is None:
            log.warning(
                "outcome dropped: the job was cancelled, or recovered after its lease expired",
                extra=job_fields(**fields, status="lost"),
            )
            return
        retry_in = None if finish.retry_at is None else (finish.retry_at - utcnow()).total_seconds()
        if snoozed:
            log.info("snoozed", extra=job_fields(**fields, status="pending", retry_in=retry_in))
        elif finish.error is None:
            log.info("finished", extra=job_fields(**fields, status=status.value))
        elif status == JobStatus.PENDING:
            log.warning(
                "finished",
                extra=job_fields(**fields, status="retry", error=finish.error, retry_in=retry_in),
            )
        else:
            log.error(
                "finished", extra=job_fields(**fields, status=status.value, error=finish.error)
            )

    async def close(self, timeout: float) -> None:
        """Write what is queued (up to `timeout`), then stop."""
        self._closing = True
        self._ready.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "%d outcomes not recorded at shutdown; their jobs will be recovered",
                len(self._queue),
            )

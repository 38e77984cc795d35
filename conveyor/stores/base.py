"""The store seam: every durable operation the runtime, API and CLI need.

Every method is one transaction. Worker-side transitions are guarded by the job's
status and its LeaseRef (worker + attempt), so a worker that lost its lease can
never overwrite the job; they report what applied instead of raising.

A lease belongs to a run, not to a status: it lasts until the run's code has stopped
(its outcome, hand-back or end is written) or its deadline passes, even when an
operator cancelled the job meanwhile. No claim takes a job whose lease is live, so no
sequence of operator actions can start a second run beside the first.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Unpack

from conveyor.errors import ConveyorError, InvalidJob, InvalidTransition, JobNotFound
from conveyor.fleet import MinuteStats, WorkerInfo
from conveyor.jobs import (
    CANCELLABLE,
    ID_MAX,
    RETRYABLE,
    BulkFilter,
    EnqueueResult,
    Finish,
    Job,
    JobFilter,
    JobStatus,
    LeaseRef,
    NewJob,
    QueueChanges,
    QueueSettings,
    RecoveryResult,
    Renewal,
)
from conveyor.periodic import Periodic, PeriodicState

# Ids per transaction of cancel_many / retry_many (and per read of a bulk action). Small
# enough that a batch holds its rows' locks (SQLite: the write lock) for milliseconds, and
# that PostgreSQL's one NOTIFY conveyor_finished per cancel statement, its ids as text,
# stays under NOTIFY's 8000-byte payload limit.
BULK_BATCH = 500
NOTIFY_PAYLOAD_MAX = 7999
# The least pause between two batches of a bulk action, for the workers' own transactions.
BULK_PAUSE_S = 0.02


class LoopClaims(abc.ABC):
    """`Store.finish_and_claim` as a coroutine on one event loop (the fetcher's), with the
    same guarantees; closed by the fetcher when it stops."""

    @abc.abstractmethod
    async def finish_and_claim(
        self,
        finishes: Sequence[Finish],
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
    ) -> tuple[dict[int, JobStatus], list[Job]]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Notifier(abc.ABC):
    """Wakes idle fetchers when work may be available; never carries job data.

    Wake-ups are one asyncio.Event on the loop that called `start`; stores differ only in
    what sets it (a LISTEN connection, a data_version poll)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_listeners: list[Callable[[int | None], None]] = []

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin listening (LISTEN connection / data_version poll); sets `_loop`."""

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up; True when woken, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    def wake_local(self) -> None:
        """Wake this process's waiters (after a local enqueue); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._event.set)

    def add_cancel_listener(self, callback: Callable[[int | None], None]) -> None:
        """Call `callback(job_id)` when a job that a run holds is cancelled (`None`: the
        store cannot tell which), from any thread, so its worker stops it within a second
        instead of at its next heartbeat."""
        self._cancel_listeners.append(callback)

    def _job_cancelled(self, job_id: int | None) -> None:
        for callback in list(self._cancel_listeners):
            callback(job_id)

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop listening and release the connection."""


class FinishListener(abc.ABC):
    """Hears that jobs finished (done, failed, cancelled), on a connection of its own, for
    the one thread per process that answers `Conveyor.wait` (conveyor/waiting.py). What it
    hears is a hint: the waiting side reads the jobs from the store before answering, and
    re-reads them every second anyway. Used from that one thread only."""

    # Whether `wait` must go on being called while nobody waits (a PostgreSQL session that
    # LISTENs must read its notifications, or the server's queue of them grows).
    drains_when_idle = False

    @abc.abstractmethod
    def connect(self) -> None:
        """Begin listening: once it returns, no finish goes unheard while the connection
        lasts. StoreUnavailable when the store cannot be reached (`wait` tries again)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> frozenset[int] | None:
        """Block up to `timeout` seconds. The ids heard finishing (empty: none), or None
        when any job may have finished (a notification without usable ids, a change of
        the SQLite file, a reconnect after which finishes may have gone unheard)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening and release the connection; safe to call twice."""


class Store(abc.ABC):
    """Durable job state (SPEC §1 lifecycle)."""

    # Whether a process's writes run one at a time whatever thread makes them (SQLite: one
    # writer per file): a worker then sends its claims and outcomes from one thread.
    serial_writes = False

    # -- lifecycle -------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> int:
        """Create or upgrade the schema to the latest version; idempotent; returns the version."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The applied schema version (0 when the schema is missing)."""

    @property
    @abc.abstractmethod
    def latest_version(self) -> int:
        """The schema version this code migrates to."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; safe to call twice."""

    def check_identity(self) -> None:
        """Raise StoreFileReplaced when the store this process opened is no longer the one
        at its address (a SQLite file deleted, renamed or replaced): for good, the process
        must stop. Cheap; serving processes call it twice a second. A server database has
        nothing to check."""
        return None

    @abc.abstractmethod
    def notifier(self) -> Notifier:
        """A new notifier that wakes this process when jobs are enqueued into this store."""

    @abc.abstractmethod
    def finish_listener(self) -> FinishListener:
        """A new listener for jobs of this store finishing (not connected yet)."""

    @property
    def listens(self) -> bool:
        """Whether the notifier hears other processes' enqueues; False: idle workers poll
        (PostgreSQL through a transaction-mode pooler without LISTEN_DATABASE_URL)."""
        return True

    # -- producers ---------------------------------------------------------------
    @abc.abstractmethod
    def enqueue(self, job: NewJob, *, connection: object | None = None) -> EnqueueResult:
        """Insert a pending job, or return the unfinished job that holds its unique_key.

        With `connection` (the caller's own open DB-API connection to the same database)
        the insert joins the caller's transaction and is committed by the caller.
        """

    @abc.abstractmethod
    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Insert all jobs in one transaction, or none of them; results in input order."""

    # -- workers -------------------------------------------------------------------
    @abc.abstractmethod
    def claim(
        self,
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
    ) -> list[Job]:
        """Atomically move up to `limit` due pending jobs without a live lease to processing,
        leased to `worker`, highest priority first, then oldest run_at, then id."""

    def finish_and_claim(
        self,
        finishes: Sequence[Finish],
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
    ) -> tuple[dict[int, JobStatus], list[Job]]:
        """`finish_many(finishes)` then `claim(...)`. Stores override it to do both in one
        transaction: a busy worker then pays one commit per batch of jobs, not two."""
        applied = self.finish_many(finishes, now=now) if finishes else {}
        return applied, self.claim(worker=worker, queues=queues, limit=limit, lease=lease, now=now)

    def loop_claims(self) -> LoopClaims | None:
        """A finish_and_claim awaited on the worker's event loop, for a store where that is
        cheaper than a call on a store thread (Redis: no thread hop each way); None (the
        default): the fetcher runs finish_and_claim on a store thread."""
        return None

    @abc.abstractmethod
    def heartbeat(
        self,
        refs: Sequence[LeaseRef],
        *,
        lease: timedelta,
        progress: Mapping[int, tuple[float, str | None]] | None = None,
        now: datetime | None = None,
    ) -> Renewal:
        """Extend the leases still held, whatever the job's status; report the ones lost and
        the runs to stop (their job is no longer processing). `progress` (job id →
        fraction, message) is stored on those of the jobs still processing under `refs`."""

    @abc.abstractmethod
    def finish_many(
        self, finishes: Sequence[Finish], *, now: datetime | None = None
    ) -> dict[int, JobStatus]:
        """processing → done / pending (retry) / failed, each only while its ref still holds
        the job; returns the new status of each job that applied. A run whose job is no
        longer processing (cancelled) only loses its lease: its outcome is dropped."""

    @abc.abstractmethod
    def release(
        self,
        refs: Sequence[LeaseRef],
        *,
        now: datetime | None = None,
        not_before: datetime | None = None,
    ) -> set[int]:
        """processing → pending, giving the attempt back (shutdown); returns the ids
        released. The lease ends now, or at `not_before` for a run whose code may go on
        until then; the same holds for a run whose job is no longer processing."""

    @abc.abstractmethod
    def recover_expired(self, *, limit: int = 1000, now: datetime | None = None) -> RecoveryResult:
        """Jobs whose lease expired → pending (attempts left) or failed (exhausted)."""

    # -- operators -------------------------------------------------------------------
    @abc.abstractmethod
    def get_job(self, job_id: int) -> Job | None:
        """One job by id, or None."""

    @abc.abstractmethod
    def dependency_jobs(self, job_id: int) -> list[Job]:
        """The jobs a job depends on (SPEC §8), in id order; pruned ones are left out."""

    @abc.abstractmethod
    def dependents(self, job_id: int, *, limit: int = 100) -> list[Job]:
        """The jobs that named `job_id` as a dependency, in id order, at most `limit`;
        pruned ones are left out."""

    @abc.abstractmethod
    def starts(self, job_id: int) -> list[datetime] | None:
        """When each attempt of a job started, oldest first (the last is `started_at`; at
        most the last 101 are kept); None for no such job."""

    @abc.abstractmethod
    def finished_among(self, job_ids: Sequence[int]) -> dict[int, Job | None]:
        """One read of many jobs: each of `job_ids` that is finished (done, failed,
        cancelled) as its Job, each that names no job as None; unfinished ones are left
        out. For `Conveyor.wait` (conveyor/waiting.py)."""

    @abc.abstractmethod
    def list_jobs(self, query: JobFilter) -> list[Job]:
        """Newest first, keyset-paginated by before_id."""

    @abc.abstractmethod
    def cancel(self, job_id: int, *, now: datetime | None = None) -> Job:
        """pending|processing → cancelled; JobNotFound / InvalidTransition otherwise. A running
        job keeps its lease until its worker has stopped the run."""

    @abc.abstractmethod
    def retry(self, job_id: int, *, now: datetime | None = None) -> Job:
        """failed|cancelled → pending now; attempts kept, max_attempts raised if needed. A
        cancelled run that may still be going keeps the job from being claimed until it
        has stopped or its lease has expired."""

    # -- operators: many jobs at once (SPEC §8 bulk actions) ---------------------------------
    @abc.abstractmethod
    def cancel_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        """`cancel`'s rule applied to each of `ids` (only to those still in `status`, when
        given); returns the ids cancelled, ascending; absent or finished ones are left out.
        One short transaction per batch of `id_batches`. Runs that held a cancelled job are
        told at once, as by `cancel`."""

    @abc.abstractmethod
    def retry_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        """`retry`'s rule applied to each of `ids` (only to those still in `status`, when
        given); returns the ids retried, ascending. A job whose unique_key another unfinished
        job holds (or a smaller id of `ids` took first) is left out, not an error. One short
        transaction per batch of `id_batches`; wakes fetchers."""

    @abc.abstractmethod
    def bulk_bounds(self, query: BulkFilter) -> tuple[int, int] | None:
        """The lowest and highest id of the jobs `query` matches now, None when it matches
        none: one read through the index of `query.status`'s jobs."""

    @abc.abstractmethod
    def bulk_ids(self, query: BulkFilter, *, after: int, upto: int, limit: int) -> list[int]:
        """The next batch of a bulk action: up to `limit` ids of jobs `query` matches, in
        (after, upto], ascending; one read that starts at `after` in an index (keyset), so
        each batch costs what it returns, not what earlier batches read."""

    def bulk_cancel(
        self,
        query: BulkFilter,
        *,
        batch: int = BULK_BATCH,
        pause: float = BULK_PAUSE_S,
        now: datetime | None = None,
    ) -> int:
        """Cancel every job `query` matches (`query.status` pending or processing), in
        batches of `batch` ids, each read by `bulk_ids` and cancelled by `cancel_many` in one
        short transaction: never one transaction over the whole set. Between batches the
        store is left to the workers for at least `pause` seconds, and at least as long as the
        batch took. Returns how many were cancelled; a job that left `query.status` meanwhile
        (claimed, finished) is left alone and not counted."""
        _check_applies(query, CANCELLABLE, "cancel")
        action = functools.partial(self.cancel_many, status=query.status, now=now)
        return self._bulk(query, action, batch, pause)

    def bulk_retry(
        self,
        query: BulkFilter,
        *,
        batch: int = BULK_BATCH,
        pause: float = BULK_PAUSE_S,
        now: datetime | None = None,
    ) -> int:
        """Retry every job `query` matches (`query.status` failed or cancelled), in batches as
        `bulk_cancel` does, by `retry_many`. Returns how many were retried; a job that left
        `query.status` meanwhile, or whose unique_key an unfinished job holds, is not."""
        _check_applies(query, RETRYABLE, "retry")
        action = functools.partial(self.retry_many, status=query.status, now=now)
        return self._bulk(query, action, batch, pause)

    def _bulk(
        self,
        query: BulkFilter,
        action: Callable[[Sequence[int]], list[int]],
        batch: int,
        pause: float,
    ) -> int:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        bounds = self.bulk_bounds(query)
        if bounds is None:
            return 0
        # The set as it is now: the walk stops at the highest id matching now, so a bulk
        # cancel does not chase jobs enqueued while it runs, and each job is read once
        # (keyset), even one that is retried, fails again and matches again meanwhile.
        low, upto = bounds
        after, count = low - 1, 0
        while True:
            ids = self.bulk_ids(query, after=after, upto=upto, limit=batch)
            started = time.monotonic()
            if ids:
                count += len(action(ids))
            if len(ids) < batch:
                return count
            after = ids[-1]
            # The workers' turn: at most half of the time goes to the bulk action. On SQLite
            # a writer that found the write lock taken sleeps in steps of up to tens of
            # milliseconds before it tries again, so a gap much shorter than BULK_PAUSE_S
            # would mostly go unused, and the next batch would take the lock again.
            time.sleep(max(pause, time.monotonic() - started))

    @abc.abstractmethod
    def prune(
        self,
        *,
        older_than: timedelta,
        now: datetime | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete finished jobs (of `status` only, when given) whose finished_at is older than
        `older_than`, in batches that are each one short transaction, at most `limit` rows
        when given; return count. A job a cancelled run still holds may go (nothing can start
        it again: its worker's writes find no row)."""

    # -- leadership of fleet-wide chores (retention) -----------------------------------------
    @abc.abstractmethod
    def try_lead(
        self, role: str, holder: str, *, ttl: timedelta, now: datetime | None = None
    ) -> bool:
        """Take or renew `role` for `holder` until `ttl` from now (the store's clock); True
        when it was free, expired or already `holder`'s, False while another holder's runs."""

    @abc.abstractmethod
    def resign(self, role: str, holder: str) -> None:
        """Give `role` up if `holder` holds it, so that another holder can take it at once."""

    @abc.abstractmethod
    def stats(self) -> dict[str, dict[str, int]]:
        """Counts of jobs by queue and status (only non-zero counts), exact: pending and
        processing ones counted on their partial indexes, finished ones read from counts
        kept by triggers (migration 0011), so the cost does not grow with finished jobs."""

    # -- fleet observability (SPEC §9): conveyor/fleet.py ------------------------------------
    @abc.abstractmethod
    def register_worker(
        self, worker: WorkerInfo, *, lease: timedelta, now: datetime | None = None
    ) -> None:
        """Insert or renew a worker process's registry row (its heartbeat: last_heartbeat
        and busy); listed until LIVE_LEASES x `lease` from now."""

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Delete a worker's registry row (it stops cleanly)."""

    @abc.abstractmethod
    def list_workers(self, *, now: datetime | None = None) -> list[WorkerInfo]:
        """The live workers (heartbeat within their listing deadline), by id."""

    @abc.abstractmethod
    def minute_stats(self, since: datetime) -> list[MinuteStats]:
        """The per-minute aggregates from `since`'s minute on, all queues together, one
        row per (minute, wait bucket, run bucket)."""

    @abc.abstractmethod
    def oldest_pending(self, *, now: datetime | None = None) -> dict[str, datetime]:
        """Per queue with due pending jobs, the oldest one's run_at (pending index)."""

    @abc.abstractmethod
    def compact_stats(self, *, keep: timedelta, now: datetime | None = None) -> int:
        """Maintenance: delete aggregated minutes older than `keep` (and, where counts are
        sharded by session, fold the shards of sessions that are gone); returns the rows
        deleted."""

    # -- queue settings (SPEC §7): the `queues` table, read by every claim ----------------------
    @abc.abstractmethod
    def list_queues(self) -> list[QueueSettings]:
        """Settings of every queue that was ever configured, paused, resumed or held, or has
        pending or processing jobs, by name; costs a probe per queue, not a read per job."""

    @abc.abstractmethod
    def configure_queue(self, name: str, **changes: Unpack[QueueChanges]) -> QueueSettings:
        """Upsert: only the given (validated) settings change; None clears; wakes workers."""

    @abc.abstractmethod
    def pause_queue(self, name: str) -> QueueSettings:
        """No claim takes the queue's jobs until `resume_queue` (running ones finish)."""

    @abc.abstractmethod
    def resume_queue(self, name: str) -> QueueSettings:
        """End the pause and any backoff (paused_until) alike; wakes workers at once."""

    @abc.abstractmethod
    def hold_queue(self, name: str, until: datetime) -> QueueSettings:
        """Fleet-wide backoff: no claim from the queue before max(its paused_until, until)."""

    # -- periodic jobs (SPEC §7) -------------------------------------------------------------
    @abc.abstractmethod
    def register_periodic(
        self, periodic: Sequence[Periodic], *, now: datetime | None = None
    ) -> list[PeriodicState]:
        """Insert a row per schedule, or update its schedule and time zone where they changed
        (ticks then count from `now`: `since`); return these schedules' rows."""

    @abc.abstractmethod
    def enqueue_periodic(
        self, periodic: Periodic, tick: datetime, *, now: datetime | None = None
    ) -> EnqueueResult | None:
        """Compare-and-set, one transaction: advance the schedule's last_tick to `tick` and
        insert the tick's job, only if `tick` is later than last_tick and not before `since`
        (a row is created when missing); None when refused (this or a later tick is taken)."""

    @abc.abstractmethod
    def list_periodic(self) -> list[PeriodicState]:
        """Every schedule's row, by name, with the status of its last job."""

    # -- conveniences over finish_many ----------------------------------------------------
    def complete(self, ref: LeaseRef, result_json: str = "null") -> bool:
        """processing → done, only while `ref` still holds the job."""
        return ref.job_id in self.finish_many([Finish.done(ref, result_json)])

    def fail(self, ref: LeaseRef, error: str, *, retry_at: datetime | None) -> JobStatus | None:
        """processing → pending at retry_at, or failed when retry_at is None; None if not held."""
        if retry_at is None:
            return self.finish_many([Finish.failed(ref, error)]).get(ref.job_id)
        return self.finish_many([Finish.retry(ref, error, retry_at)]).get(ref.job_id)


# -- pruning in batches, shared by the stores ------------------------------------------------
PRUNE_BATCH = 5000
FINISHED = (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED)


@dataclass
class PruneBatch:
    """One batch of a prune: delete up to `size` rows of `status`, then report `deleted`."""

    status: JobStatus
    size: int
    count: int = 0

    def deleted(self, count: int) -> None:
        self.count = count


def prune_batches(
    status: JobStatus | None, limit: int | None, batch: int = PRUNE_BATCH
) -> Iterator[PruneBatch]:
    """The batches of one `Store.prune`: each finished status in turn (or only `status`),
    batches until one comes back short, at most `limit` rows in all."""
    if status is not None and status not in FINISHED:
        raise ValueError(f"only finished jobs are pruned, not {status.value!r} ones")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    left = limit
    for current in FINISHED if status is None else (status,):
        while left is None or left > 0:
            step = PruneBatch(current, batch if left is None else min(batch, left))
            yield step
            if left is not None:
                left -= step.count
            if step.count < step.size:
                break


# -- bulk actions in batches, shared by the stores (SPEC §8) -----------------------------------
def id_batches(ids: Iterable[int], size: int = BULK_BATCH) -> Iterator[list[int]]:
    """`ids` without repeats, ascending (the order rows are locked in), in lists of at most
    `size` whose decimal text, comma-separated, is at most NOTIFY_PAYLOAD_MAX bytes. An id
    no store can hold (below 1, beyond 64 bits) names no job and is left out."""
    batch: list[int] = []
    text = 0
    for job_id in sorted({i for i in ids if 1 <= i <= ID_MAX}):
        width = len(str(job_id)) + 1
        if batch and (len(batch) >= size or text + width > NOTIFY_PAYLOAD_MAX + 1):
            yield batch
            batch, text = [], 0
        batch.append(job_id)
        text += width
    if batch:
        yield batch


def refusal(
    job_id: int, status: JobStatus | None, action: str, blocker: tuple[int, str] | None = None
) -> ConveyorError:
    """Why `cancel` or `retry` (`action`) did not apply to a job now in `status` (None: no such
    job); `blocker`: the dependency (id, status) that keeps a retry from applying (SPEC §8).
    One wording for every store."""
    if status is None:
        return JobNotFound(f"job {job_id} not found")
    if action == "retry" and blocker is not None:
        return InvalidTransition(
            f"job {job_id} cannot be retried: its dependency {blocker[0]} is {blocker[1]}; "
            "retry that first"
        )
    if action == "retry" and status in RETRYABLE:
        return InvalidTransition(
            f"job {job_id} cannot be retried: another unfinished job holds its unique_key"
        )
    return InvalidTransition(f"job {job_id} is {status.value}: cannot {action} it")


def _check_applies(query: BulkFilter, statuses: tuple[JobStatus, ...], action: str) -> None:
    if query.status not in statuses:
        names = " or ".join(s.value for s in statuses)
        raise InvalidJob(f"{action} applies to {names} jobs, not {query.status.value} ones")

"""WorkerPool: N job slots fed by the fetcher, with leases, recovery and graceful shutdown.

fetcher ──claim(min(free slots, fetch_limit))──► slots ──outcome──► completer ──► store
   ▲ notifier (local enqueue, other processes)     │ leases (own thread) renew them
   └──────────────── a slot frees ─────────────────┘ reaper recovers expired leases

The pool owns the slots and what runs in them; each neighbour has its module: fetcher.py
(claims), executor.py (runs one job, returns its outcome), completer.py (writes outcomes),
leases.py (renewals, watchdog), reaper.py (recovery), loopwatch.py (a blocked event loop).

A run holds its job's lease from the claim until its last write is stored, even when an
operator cancels the job meanwhile: a cancelled async task is stopped and its run ended at
once; a cancelled sync task sees `ctx.cancelled`, frees its slot, and keeps the lease until
its code returns (a thread cannot be stopped), so a retry of the job cannot start beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from conveyor import context, tracing
from conveyor.app import Conveyor
from conveyor.context import JobContext
from conveyor.fleet import WorkerInfo, package_version
from conveyor.jobs import Finish, FinishKind, Job, LeaseRef, utcnow
from conveyor.logs import job_fields
from conveyor.metrics import Metrics
from conveyor.settings import (
    DEFAULT_FETCH_INTERVAL,
    DEFAULT_FETCH_LIMIT,
    DEFAULT_LEASE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_WORKERS,
)
from conveyor.worker.completer import Completer, Done
from conveyor.worker.executor import Executor
from conveyor.worker.fetcher import Fetcher
from conveyor.worker.isolation import IsolationConfig
from conveyor.worker.leases import Leases, LeaseWatchdog
from conveyor.worker.loopwatch import LoopWatch
from conveyor.worker.reaper import Reaper
from conveyor.worker.retention import Retention, RetentionConfig
from conveyor.worker.scheduler import Scheduler
from conveyor.worker.storecalls import StoreCalls

if TYPE_CHECKING:
    from conveyor.spans import Execution, Spans

log = logging.getLogger("conveyor.worker")

# A job whose code may still be running at exit is handed back runnable this much later:
# by then this process has exited and its run has certainly stopped.
HANDBACK_GRACE_S = 2.0


def new_worker_id() -> str:
    """Unique per process and start: host, pid, and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class PoolConfig:
    concurrency: int = DEFAULT_WORKERS
    fetch_interval: float = DEFAULT_FETCH_INTERVAL
    fetch_limit: int = DEFAULT_FETCH_LIMIT
    queues: list[str] | None = None
    lease: float = DEFAULT_LEASE
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    # --pool, --max-tasks-per-child, --max-memory-per-child and --app (worker/isolation.py)
    isolation: IsolationConfig = field(default_factory=IsolationConfig)
    # --retain-done, --retain-cancelled, --retain-failed (worker/retention.py)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @property
    def heartbeat_interval(self) -> float:
        # three renewals per lease: one late or failed heartbeat never loses a lease
        return self.lease / 3

    @property
    def reaper_interval(self) -> float:
        # a dead worker's job is back within lease + this, i.e. about one lease period
        return min(max(self.lease / 4, 0.1), 5.0)


@dataclass
class _Running:
    job: Job
    slot: str
    task: asyncio.Task[None]
    context: JobContext
    started: float = field(default_factory=time.monotonic)
    # why its task was cancelled: "cancelled" (by an operator), "lost" (lease lost),
    # "expiring" (lease could not be renewed), "shutdown"; None while it runs
    stopping: str | None = None
    expiry_warned: bool = False  # the watchdog already warned about this sync job


class WorkerPool:
    def __init__(
        self,
        app: Conveyor,
        config: PoolConfig,
        *,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics or Metrics()
        self.metrics.slots_total = config.concurrency
        self.worker_id = worker_id or new_worker_id()
        self.store = app.store
        self._calls = StoreCalls(serial_writes=self.store.serial_writes)
        self._executor = Executor(app, threads=config.concurrency, isolation=config.isolation)
        self._notifier = self.store.notifier()
        self._running: dict[int, _Running] = {}
        # every lease this process holds: running jobs, outcomes not yet written, and
        # cancelled runs whose code still runs on a thread (`_lingering`)
        self._leases = Leases(
            self.store,
            lease=config.lease,
            on_lost=self._lease_lost,
            on_stop=self._cancelled,
            beat=self._beat,
        )
        self._started_at = utcnow()
        self._version = package_version()
        self._lingering: dict[int, LeaseRef] = {}
        self._free_slots = [f"WORKER-{n}" for n in range(config.concurrency, 0, -1)]
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        self._completer = Completer(self.store, self._calls, self.metrics, self._written)
        self._loopwatch = LoopWatch(self._describe)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()
        # periodic jobs (SPEC §7): built here, so a periodic job that does not fit its task
        # fails the start with one line
        self._scheduler = Scheduler(
            app,
            self.store,
            self._calls,
            stopping=self._stop,
            on_enqueued=self._notifier.wake_local,
        )

    # -- public -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set, then stop claiming, let running jobs finish for up to
        shutdown_timeout (or until `hurry` is set: a second signal), hand the rest back to
        pending, and return."""
        self._loop = asyncio.get_running_loop()
        self._hurry = hurry or self._hurry
        self._started_at = utcnow()
        await self._register()
        await self._notifier.start()
        self.app.add_enqueue_listener(self._notifier.wake_local)
        self._notifier.add_cancel_listener(self._leases.cancel_hint)
        self._leases.start()
        self._loopwatch.start()
        watchdog = LeaseWatchdog(self._leases, self._watched, self._lease_expiring)
        reaper = Reaper(
            self.store,
            self._calls,
            self.metrics,
            interval=self.config.reaper_interval,
            on_requeued=self._notifier.wake_local,
        )
        fetcher = Fetcher(
            store=self.store,
            calls=self._calls,
            notifier=self._notifier,
            completer=self._completer,
            slots=self,
            start=self._start,
            worker_id=self.worker_id,
            queues=self.config.queues,
            fetch_limit=self.config.fetch_limit,
            fetch_interval=self.config.fetch_interval,
            lease=self.config.lease,
            stopping=self._stop,
        )
        helpers = [
            asyncio.create_task(self._completer.run(), name="conveyor-completer"),
            asyncio.create_task(watchdog.run(), name="conveyor-lease-watchdog"),
            asyncio.create_task(reaper.run(), name="conveyor-reaper"),
            asyncio.create_task(
                Retention(
                    self.store, self._calls, self.config.retention, holder=self.worker_id
                ).run(),
                name="conveyor-retention",
            ),
            asyncio.create_task(self._scheduler.run(), name="conveyor-scheduler"),
            asyncio.create_task(self._watch(stop), name="conveyor-stop-watcher"),
        ]
        log.info(
            "worker %s started: %d slots, queues=%s, lease=%ss",
            self.worker_id,
            self.config.concurrency,
            ",".join(self.config.queues) if self.config.queues else "all",
            self.config.lease,
        )
        self.ready.set()
        try:
            await fetcher.run()
        finally:
            await self._drain()
            await self._completer.close(timeout=10.0)
            await self._leases.stop()
            self._loopwatch.stop()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.app.remove_enqueue_listener(self._notifier.wake_local)
            await self._notifier.stop()
            self._executor.shutdown()
            await self._unregister()
            await asyncio.to_thread(self._calls.shutdown)
            log.info("worker %s stopped", self.worker_id)

    @property
    def busy(self) -> int:
        return len(self._running)

    # -- the workers registry (SPEC §9) ----------------------------------------------------
    def _registration(self) -> WorkerInfo:
        """This process's registry row as of now (any thread: `busy` is one len())."""
        return WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=None if self.config.queues is None else tuple(self.config.queues),
            slots=self.config.concurrency,
            busy=self.busy,
            version=self._version,
            started_at=self._started_at,
            last_heartbeat=utcnow(),
        )

    async def _register(self) -> None:
        try:
            await self._calls(self._beat_once)
        except Exception as exc:  # the heartbeat registers it later
            log.warning("could not register worker %s: %s", self.worker_id, exc)

    def _beat_once(self) -> None:
        lease = timedelta(seconds=self.config.lease)
        self.store.register_worker(self._registration(), lease=lease)

    def _beat(self) -> None:
        """The registry heartbeat, on the lease thread with each renewal round; an upsert,
        so a row deleted meanwhile (the process stalled past its deadline) comes back."""
        try:
            self._beat_once()
        except Exception as exc:
            log.warning("worker registry heartbeat failed: %s", exc)

    async def _unregister(self) -> None:
        """A clean stop leaves the listing at once."""
        try:
            await self._calls(self.store.unregister_worker, self.worker_id)
        except Exception as exc:  # the row expires on its own
            log.warning("could not unregister worker %s: %s", self.worker_id, exc)

    # -- slots (what the fetcher sees) ---------------------------------------------------
    @property
    def free(self) -> int:
        return len(self._free_slots)

    async def freed(self) -> None:
        self._slot_freed.clear()
        if not self._free_slots and not self._stop.is_set():
            await self._slot_freed.wait()

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        log.info("shutting down: no new jobs will be claimed")
        self._stop.set()
        self._notifier.wake_local()
        self._slot_freed.set()

    # -- running a job ----------------------------------------------------------------------
    def _start(self, jobs: list[Job], held_until: float) -> None:
        """Run each claimed job in a slot of its own; their leases certainly hold until
        `held_until` (monotonic)."""
        progressed, dependencies = self._leases.progressed, self.store.dependency_jobs
        runs = [(job, job.lease_ref(), JobContext(job, progressed, dependencies)) for job in jobs]
        self._leases.hold_all([(ref, ctx) for _, ref, ctx in runs], held_until)
        spans = tracing.spans()
        for job, ref, ctx in runs:
            slot = self._free_slots.pop()
            run = (
                self._run(job, ref, slot, ctx, None)
                if spans is None
                else self._traced(job, ref, slot, ctx, spans)
            )
            task = asyncio.create_task(run, name=f"conveyor-job-{job.id}")
            self._running[job.id] = _Running(job, slot, task, ctx)
        self.metrics.slots_busy = len(self._running)

    async def _traced(
        self, job: Job, ref: LeaseRef, slot: str, ctx: JobContext, spans: Spans
    ) -> None:
        # the run's span is current in the task's code and on the run's log lines
        with spans.execution(job) as span:
            await self._run(job, ref, slot, ctx, span)

    async def _run(
        self, job: Job, ref: LeaseRef, slot: str, ctx: JobContext, span: Execution | None
    ) -> None:
        started = time.monotonic()
        wait = max(0.0, (utcnow() - job.run_at).total_seconds())
        if log.isEnabledFor(logging.INFO):  # the fields cost more than a no-op job itself
            log.info(
                "processing",
                extra=job_fields(
                    worker=slot,
                    job=job.id,
                    type=job.type,
                    priority=job.priority,
                    attempt=job.attempts,
                ),
            )
        context.bind(ctx)  # this task's own context: current_job() in the task's code
        try:
            finish = await self._executor.run(job, ref)
        except asyncio.CancelledError:
            running = self._running.get(job.id)
            reason = None if running is None else running.stopping
            if span is not None:
                span.stopped(reason)
            self._release_slot(job.id)
            self._after_cancel(job, slot, reason)
            raise
        if span is not None:
            span.finished(finish)
        if finish.retry_at is not None and finish.kind == FinishKind.RETRY:
            # a local retry is due then: wake the fetcher at that moment, not at its next poll
            self._wake_at((finish.retry_at - utcnow()).total_seconds())
        if finish.hold_queue and finish.retry_at is not None:
            await self._hold_queue(job, slot, finish.retry_at)
        self._release_slot(job.id)
        trace = None if span is None else span.ids
        self._completer.submit(Done(finish, job, slot, time.monotonic() - started, wait, trace))

    async def _hold_queue(self, job: Job, slot: str, until: datetime) -> None:
        """Snooze(queue=True): the whole queue starts nothing on any worker until `until`
        (held before the job itself goes back to pending, so nothing slips in between)."""
        try:
            await self._calls(self.store.hold_queue, job.queue, until)
        except Exception as exc:
            log.warning("could not hold queue %s: %s", job.queue, exc)
            return
        log.warning(
            "queue %s held until %s (Snooze(queue=True))",
            job.queue,
            until.isoformat(),
            extra=job_fields(worker=slot, job=job.id, status="pending"),
        )

    def _after_cancel(self, job: Job, slot: str, reason: str | None) -> None:
        """The job's task was cancelled; settle its lease by the reason."""
        thread = self._executor.still_running.pop(job.id, None)
        if reason == "shutdown":
            if thread is not None and not thread.done():
                self._executor.still_running[job.id] = thread  # for _drain
            return  # _drain hands the job back
        if reason != "cancelled":
            # lease lost, or about to expire unrenewed: this process can write nothing more
            self._leases.drop(job.lease_ref())
            return
        if thread is None or thread.done():
            self._end_run(job, slot)
            return
        # The slot is free, but the job keeps its lease (renewed) until the code has stopped
        # (an isolated task's process is reaped; a thread returns), so that a retry cannot
        # start a second run beside it.
        if not self._executor.can_stop(job):
            log.warning(
                "cancelled; this sync task's thread cannot be stopped (it can check "
                "current_job().cancelled): its job is held until its code returns",
                extra=job_fields(worker=slot, job=job.id, status="cancelled"),
            )
        self._lingering[job.id] = job.lease_ref()
        loop = asyncio.get_running_loop()
        thread.add_done_callback(lambda _: self._soon(loop, job, slot))

    def _soon(self, loop: asyncio.AbstractEventLoop, job: Job, slot: str) -> None:
        """From the thread that ran a cancelled sync task, once its code returned."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is exiting
            loop.call_soon_threadsafe(self._end_lingering, job, slot)

    def _end_lingering(self, job: Job, slot: str) -> None:
        if job.id in self._lingering:  # not handed back at shutdown meanwhile
            self._end_run(job, slot)

    def _end_run(self, job: Job, slot: str) -> None:
        """A cancelled run's code has stopped: write that its lease ends (Finish.ended)."""
        self._completer.submit(Done(Finish.ended(job.lease_ref()), job, slot))

    def _release_slot(self, job_id: int) -> None:
        running = self._running.pop(job_id, None)
        if running is not None:
            self._free_slots.append(running.slot)
            self.metrics.slots_busy = len(self._running)
            self._slot_freed.set()
            if len(self._free_slots) == 1:
                self._notifier.wake_local()  # a slot opened: look for work now

    def _written(self, refs: list[LeaseRef]) -> None:
        """These runs' last writes are stored: their leases are no longer ours to renew."""
        self._leases.drop_all(refs)
        if self._lingering:
            for ref in refs:
                if self._lingering.get(ref.job_id) == ref:
                    del self._lingering[ref.job_id]

    def _wake_at(self, delay: float) -> None:
        if self._loop is not None:
            self._loop.call_later(max(delay, 0.0), self._notifier.wake_local)

    def _describe(self, task: asyncio.Task[object] | None) -> str:
        """Which job an asyncio task runs, for the loop watch's warning."""
        for running in list(self._running.values()):
            if running.task is task:
                return f"task {running.job.type!r} (job {running.job.id})"
        return "code outside any job" if task is None else f"asyncio task {task.get_name()!r}"

    # -- what the leases report ---------------------------------------------------------------
    def _watched(self) -> list[int]:
        """Running jobs the lease watchdog should look at."""
        return [
            job_id
            for job_id, running in self._running.items()
            if not running.stopping and not running.expiry_warned
        ]

    def _lease_expiring(self, job_id: int) -> None:
        running = self._running.get(job_id)
        if running is None:
            return
        if not self._executor.can_stop(running.job):
            # A thread cannot be stopped: the job keeps its slot until its code returns.
            running.expiry_warned = True
            log.warning(
                "lease could not be renewed and is about to expire; this sync job cannot be "
                "stopped, so another worker may start it again once the lease has expired",
                extra=job_fields(worker=running.slot, job=job_id, status="lost"),
            )
            return
        log.warning(
            "lease could not be renewed and is about to expire: stopping the job before "
            "another worker can take it over",
            extra=job_fields(worker=running.slot, job=job_id, status="lost"),
        )
        self._stop_job(running, "expiring")

    def _run_of(self, ref: LeaseRef) -> _Running | None:
        """The run that holds this claim: not a later claim of the same job in this process
        (a retry taken once the cancelled run's lease ended), which a stale report must not
        stop."""
        running = self._running.get(ref.job_id)
        if running is None or running.stopping or running.job.lease_ref() != ref:
            return None
        return running

    def _lease_lost(self, ref: LeaseRef) -> None:
        """A renewal found the lease gone (recovered after it expired): stop the run."""
        if self._lingering.get(ref.job_id) == ref:
            del self._lingering[ref.job_id]
        running = self._run_of(ref)
        if running is not None:
            log.warning(
                "lease lost (recovered after it expired): stopping the job",
                extra=job_fields(worker=running.slot, job=ref.job_id, status="lost"),
            )
            self._stop_job(running, "lost")

    def _cancelled(self, ref: LeaseRef) -> None:
        """A renewal found the job no longer processing: an operator cancelled it."""
        running = self._run_of(ref)
        if running is not None:
            log.info(
                "cancelled: stopping the job",
                extra=job_fields(worker=running.slot, job=ref.job_id, status="cancelled"),
            )
            self._stop_job(running, "cancelled")

    @staticmethod
    def _stop_job(running: _Running, reason: str) -> None:
        """Cancel the run's task; a sync task's code sees `current_job().cancelled`."""
        running.stopping = reason
        running.context.cancel()
        running.task.cancel()

    # -- shutdown ---------------------------------------------------------------------------
    def _stopped(self, running: _Running) -> bool:
        """Whether a cancelled job's code has certainly stopped: its task ended, and no thread
        still runs it."""
        thread = self._executor.still_running.get(running.job.id)
        return running.task.done() and (thread is None or thread.done())

    async def _wait_or_hurry(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        """Until every task is done, `timeout` passes, or a second signal says hurry."""
        hurried: asyncio.Task[object] = asyncio.create_task(self._hurry.wait())
        pending: set[asyncio.Task[object]] = set(tasks)
        deadline = time.monotonic() + timeout
        try:
            while pending and not hurried.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                _, pending = await asyncio.wait(
                    [*pending, hurried], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(hurried)
        finally:
            hurried.cancel()

    async def _drain(self) -> None:
        tasks = [r.task for r in self._running.values()]
        if tasks and not self._hurry.is_set():
            log.info(
                "waiting up to %ss for %d running jobs (signal again to hand them back now)",
                self.config.shutdown_timeout,
                len(tasks),
            )
            await self._wait_or_hurry(tasks, self.config.shutdown_timeout)
        left = list(self._running.values())
        for r in left:
            self._stop_job(r, "shutdown")
        if left:
            # a task that swallows its cancellation, or an isolated task's process being
            # killed, is not waited for beyond a moment
            await asyncio.wait([r.task for r in left], timeout=1.0)
            killed = [
                self._executor.still_running.get(r.job.id)
                for r in left
                if self._executor.can_stop(r.job)  # a thread is not worth waiting for
            ]
            reaped = [asyncio.wrap_future(f) for f in killed if f is not None and not f.done()]
            if reaped:
                await asyncio.wait(reaped, timeout=1.0)
        # A sync task's thread cannot be stopped, and an async task may ignore its
        # cancellation: such a job is still running until this process exits (in moments).
        # Its lease ends only after HANDBACK_GRACE, so that no other worker starts it while
        # this run is still going (never two runs at once). Cancelled runs still going on a
        # thread (`_lingering`) are held as long.
        still_running = [r.job.lease_ref() for r in left if not self._stopped(r)]
        stopped = [r.job.lease_ref() for r in left if self._stopped(r)]
        lingering = list(self._lingering.values())
        self._lingering.clear()
        for ref in [*still_running, *stopped, *lingering]:
            self._leases.drop(ref)  # no renewal may extend them past the grace
        if not (still_running or stopped or lingering):
            return
        released: set[int] = set()
        try:
            if stopped:
                released |= await self._calls(self.store.release, stopped)
            if still_running or lingering:
                released |= await self._calls(
                    self.store.release,
                    [*still_running, *lingering],
                    not_before=utcnow() + timedelta(seconds=HANDBACK_GRACE_S),
                )
        except Exception as exc:
            log.error("could not hand back %d jobs (their leases will expire): %s", len(left), exc)
            return
        self.metrics.jobs_handed_back(len(released))
        for r in left:
            log.warning(
                "handed back to pending (shutdown timeout)",
                extra=job_fields(worker=r.slot, job=r.job.id, status="pending"),
            )

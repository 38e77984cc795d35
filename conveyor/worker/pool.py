"""WorkerPool: N job slots fed by one fetcher, with leases, reaper and graceful shutdown.

fetcher ──claim(min(free slots, fetch_limit))──► slots ──outcome──► completer ──► store
   ▲ notifier (local enqueue, other processes)     │ leases (own thread) renew them
   └──────────────── a slot frees ─────────────────┘ reaper recovers expired leases

A run holds its job's lease from the claim until its last write is stored, even when an
operator cancels the job meanwhile: a cancelled async task is stopped and its run ended at
once; a cancelled sync task (a thread cannot be stopped) frees its slot but keeps the lease
until its code returns, so a retry of the job cannot start beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from conveyor.app import Conveyor
from conveyor.backoff import exponential_backoff
from conveyor.jobs import Finish, Job, LeaseRef, utcnow
from conveyor.logs import job_fields
from conveyor.metrics import Metrics
from conveyor.worker.completer import Completer, Done
from conveyor.worker.executor import Executor
from conveyor.worker.leases import Leases
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

# A job whose code may still be running at exit is handed back runnable this much later:
# by then this process has exited and its run has certainly stopped.
HANDBACK_GRACE_S = 2.0


def new_worker_id() -> str:
    """Unique per process and start: host, pid, and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class PoolConfig:
    concurrency: int = 5
    fetch_interval: float = 5.0
    fetch_limit: int = 10
    queues: list[str] | None = None
    lease: float = 30.0
    shutdown_timeout: float = 30.0

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
        self._calls = StoreCalls()
        self._executor = Executor(app, threads=config.concurrency)
        self._notifier = self.store.notifier()
        self._running: dict[int, _Running] = {}
        # every lease this process holds: running jobs, outcomes not yet written, and
        # cancelled runs whose code still runs on a thread (`_lingering`)
        self._leases = Leases(
            self.store, lease=config.lease, on_lost=self._lease_lost, on_stop=self._cancelled
        )
        self._lingering: dict[int, LeaseRef] = {}
        self._free_slots = [f"WORKER-{n}" for n in range(config.concurrency, 0, -1)]
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._completer = Completer(self.store, self._calls, self.metrics, self._written)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()

    # -- public -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then stop claiming, let running jobs finish for up to
        shutdown_timeout, hand the rest back to pending, and return."""
        self._loop = asyncio.get_running_loop()
        await self._notifier.start()
        self.app.add_enqueue_listener(self._notifier.wake_local)
        self._leases.start()
        helpers = [
            asyncio.create_task(self._completer.run(), name="conveyor-completer"),
            asyncio.create_task(self._lease_watchdog(), name="conveyor-lease-watchdog"),
            asyncio.create_task(self._reaper_loop(), name="conveyor-reaper"),
        ]
        watcher = asyncio.create_task(self._watch(stop), name="conveyor-stop-watcher")
        log.info(
            "worker %s started: %d slots, queues=%s, lease=%ss",
            self.worker_id,
            self.config.concurrency,
            ",".join(self.config.queues) if self.config.queues else "all",
            self.config.lease,
        )
        self.ready.set()
        try:
            await self._fetch_loop()
        finally:
            await self._drain()
            await self._completer.close(timeout=10.0)
            await self._leases.stop()
            for task in [*helpers, watcher]:
                task.cancel()
            await asyncio.gather(*helpers, watcher, return_exceptions=True)
            self.app.remove_enqueue_listener(self._notifier.wake_local)
            await self._notifier.stop()
            self._executor.shutdown()
            await asyncio.to_thread(self._calls.shutdown)
            log.info("worker %s stopped", self.worker_id)

    @property
    def busy(self) -> int:
        return len(self._running)

    # -- fetching -------------------------------------------------------------------------
    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        log.info("shutting down: no new jobs will be claimed")
        self._stop.set()
        self._notifier.wake_local()
        self._slot_freed.set()

    async def _fetch_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            free = len(self._free_slots)
            if free == 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            limit = min(free, self.config.fetch_limit)
            # outcomes ready now ride in the claim's transaction: one commit, not two
            finished = self._completer.take()
            asked = time.monotonic()
            try:
                applied, jobs = await self._calls(
                    self.store.finish_and_claim,
                    [d.finish for d in finished],
                    worker=self.worker_id,
                    queues=self.config.queues,
                    limit=limit,
                    lease=timedelta(seconds=self.config.lease),
                )
            except Exception as exc:
                self._completer.give_back(finished)
                log.warning("claim failed, retrying in %.1fs: %s", backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._completer.report(finished, applied)
            for job in jobs:
                self._start(job, held_until=asked + self.config.lease)
            if len(jobs) < limit and not self._stop.is_set():
                # Nothing more is due: sleep until an enqueue wakes us, or the poll interval.
                await self._notifier.wait(self.config.fetch_interval)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    # -- running a job ----------------------------------------------------------------------
    def _start(self, job: Job, *, held_until: float) -> None:
        slot = self._free_slots.pop()
        self._leases.hold(job.lease_ref(), held_until)
        task = asyncio.create_task(self._run_job(job, slot), name=f"conveyor-job-{job.id}")
        self._running[job.id] = _Running(job, slot, task)
        self.metrics.slots_busy = len(self._running)

    async def _run_job(self, job: Job, slot: str) -> None:
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
        try:
            outcome = await self._executor.run(job)
        except asyncio.CancelledError:
            running = self._running.get(job.id)
            self._release_slot(job.id)
            self._after_cancel(job, slot, None if running is None else running.stopping)
            raise
        duration = time.monotonic() - started
        ref = job.lease_ref()
        retry_in: float | None = None
        if outcome.error is None:
            finish = Finish(ref, result_json=outcome.result_json)
        else:
            retry_at = None
            if outcome.retryable and job.attempts < job.max_attempts:
                task = self.app.tasks.get(job.type)
                retry_in = (task.options.backoff if task else exponential_backoff)(job.attempts)
                retry_at = utcnow() + timedelta(seconds=retry_in)
                self._wake_at(retry_in)
            finish = Finish(ref, error=outcome.error, retry_at=retry_at)
        self._release_slot(job.id)
        self._completer.submit(Done(finish, job, slot, duration, wait, retry_in))

    def _after_cancel(self, job: Job, slot: str, reason: str | None) -> None:
        """The job's task was cancelled; settle its lease by the reason."""
        thread = self._executor.still_running.pop(job.id, None)
        if reason == "shutdown":
            if thread is not None and not thread.done():
                self._executor.still_running[job.id] = thread  # for _drain
            return  # _drain hands the job back
        if reason != "cancelled":
            # lease lost, or about to expire unrenewed: this process can write nothing more
            self._leases.drop(job.id)
            return
        if thread is None or thread.done():
            self._end_run(job, slot)
            return
        # A thread cannot be stopped: the slot is free, but the job keeps its lease (renewed)
        # until the code returns, so that a retry cannot start a second run beside it.
        log.warning(
            "cancelled, but this sync task cannot be stopped: its job is held until its code "
            "returns",
            extra=job_fields(worker=slot, job=job.id, status="cancelled"),
        )
        self._lingering[job.id] = job.lease_ref()
        loop = asyncio.get_running_loop()
        thread.add_done_callback(lambda _: self._soon(loop, lambda: self._end_lingering(job, slot)))

    @staticmethod
    def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is exiting
            loop.call_soon_threadsafe(callback)

    def _end_lingering(self, job: Job, slot: str) -> None:
        if job.id in self._lingering:  # not handed back at shutdown meanwhile
            self._end_run(job, slot)

    def _end_run(self, job: Job, slot: str) -> None:
        """A cancelled run's code has stopped: write that its lease ends (Finish.ended)."""
        self._completer.submit(Done(Finish.ended(job.lease_ref()), job, slot, 0.0, 0.0))

    def _release_slot(self, job_id: int) -> None:
        running = self._running.pop(job_id, None)
        if running is not None:
            self._free_slots.append(running.slot)
            self.metrics.slots_busy = len(self._running)
            self._slot_freed.set()
            if len(self._free_slots) == 1:
                self._notifier.wake_local()  # a slot opened: look for work now

    def _written(self, job_id: int) -> None:
        """The run's last write is stored: its lease is no longer ours to renew."""
        self._leases.drop(job_id)
        self._lingering.pop(job_id, None)

    def _wake_at(self, delay: float) -> None:
        """A local retry is due in `delay` seconds: wake the fetcher then, not at the next poll."""
        if self._loop is not None:
            self._loop.call_later(delay, self._notifier.wake_local)

    # -- leases -----------------------------------------------------------------------------
    async def _lease_watchdog(self) -> None:
        """Stop a job before its lease can expire when the lease could not be renewed (the
        store unreachable, a partition): past that moment another worker may recover and
        start the job, and two runs would overlap. Checks often enough to act before the
        deadline, never after it (unless the event loop itself is blocked)."""
        period = min(self.config.heartbeat_interval / 2, 1.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for job_id, running in list(self._running.items()):
                until = self._leases.held_until(job_id)
                if until is None or running.stopping or running.expiry_warned:
                    continue
                if now + period >= until:
                    self._lease_expiring(job_id, running)

    def _lease_expiring(self, job_id: int, running: _Running) -> None:
        if self._on_a_thread(running):
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

    def _lease_lost(self, job_id: int) -> None:
        """A renewal found the lease gone (recovered after it expired): stop the run."""
        self._lingering.pop(job_id, None)
        running = self._running.get(job_id)
        if running is None or running.stopping:
            return
        log.warning(
            "lease lost (recovered after it expired): stopping the job",
            extra=job_fields(worker=running.slot, job=job_id, status="lost"),
        )
        self._stop_job(running, "lost")

    def _cancelled(self, job_id: int) -> None:
        """A renewal found the job no longer processing: an operator cancelled it."""
        running = self._running.get(job_id)
        if running is None or running.stopping:
            return
        log.info(
            "cancelled: stopping the job",
            extra=job_fields(worker=running.slot, job=job_id, status="cancelled"),
        )
        self._stop_job(running, "cancelled")

    @staticmethod
    def _stop_job(running: _Running, reason: str) -> None:
        running.stopping = reason
        running.task.cancel()

    async def _reaper_loop(self) -> None:
        # Every process runs the reaper; the guarded UPDATE makes concurrent runs harmless.
        while True:
            await asyncio.sleep(self.config.reaper_interval)
            try:
                recovered = await self._calls(self.store.recover_expired, limit=1000)
            except Exception as exc:
                log.warning("recovering expired leases failed: %s", exc)
                continue
            if recovered.count:
                self.metrics.jobs_recovered(recovered.count)
                log.warning(
                    "recovered %d jobs whose lease expired (requeued %s, failed %s)",
                    recovered.count,
                    recovered.requeued,
                    recovered.failed,
                )
                if recovered.requeued:
                    self._notifier.wake_local()

    # -- shutdown ---------------------------------------------------------------------------
    def _on_a_thread(self, running: _Running) -> bool:
        """Whether the job's code runs on a thread (a sync task), which cannot be stopped."""
        task = self.app.tasks.get(running.job.type)
        return task is not None and not task.is_async

    def _stopped(self, running: _Running) -> bool:
        """Whether a cancelled job's code has certainly stopped: its task ended, and no thread
        still runs it."""
        thread = self._executor.still_running.get(running.job.id)
        return running.task.done() and (thread is None or thread.done())

    async def _drain(self) -> None:
        tasks = [r.task for r in self._running.values()]
        if tasks:
            log.info(
                "waiting up to %ss for %d running jobs", self.config.shutdown_timeout, len(tasks)
            )
            await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
        left = list(self._running.values())
        for r in left:
            self._stop_job(r, "shutdown")
        if left:
            # a task that swallows its cancellation is not waited for beyond a moment
            await asyncio.wait([r.task for r in left], timeout=1.0)
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
            self._leases.drop(ref.job_id)  # no renewal may extend them past the grace
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

"""Run one claimed job once: async tasks on the loop, sync tasks on a thread pool. The
result is the store's outcome (`Finish`), decided here where the task's options are known:
done, a retry after backoff (or after `Retry(in_=…)`), failed for good, or snoozed."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from conveyor.app import Conveyor
from conveyor.backoff import exponential_backoff
from conveyor.context import Retry, Snooze
from conveyor.jobs import Finish, Job, LeaseRef, utcnow
from conveyor.payloads import ResultError, encode_result
from conveyor.tasks import Task, call_arguments
from conveyor.worker.isolation import ChildFailed, ChildPool, IsolationConfig

MAX_ERROR_CHARS = 4000
TRACEBACK_FRAMES = 6


def describe_error(exc: BaseException) -> str:
    """`Type: message` then a short traceback (last frames only)."""
    head = f"{type(exc).__name__}: {exc}"
    frames = traceback.format_tb(exc.__traceback__, limit=-TRACEBACK_FRAMES)
    text = head + ("\nTraceback (most recent call last):\n" + "".join(frames) if frames else "")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    # Storable on both stores whatever the message holds: PostgreSQL text takes no NUL, and
    # a lone surrogate cannot be encoded at all (the outcome would never be written).
    return text.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")


class Executor:
    """Knows the app's tasks and where each kind runs; never raises for a task's fault."""

    def __init__(
        self, app: Conveyor, threads: int, isolation: IsolationConfig | None = None
    ) -> None:
        self.app = app
        self._threads = threads
        self._pool = self._new_pool()
        # isolated sync tasks (and all of them with --pool process) run in child processes
        self._isolation = ChildPool(app, isolation or IsolationConfig(), threads)
        self.abandoned_threads = 0
        # job id → the thread's future of a sync task cancelled while its code still runs
        # (a thread cannot be stopped); the pool takes it to hold the job until it returns
        self.still_running: dict[int, Future[object]] = {}

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=max(1, self._threads), thread_name_prefix="conveyor-task"
        )

    async def run(self, job: Job, ref: LeaseRef) -> Finish:
        """Run `job`, claimed under `ref`, in the current context (the job's asyncio task,
        where the pool bound its JobContext); raises only CancelledError."""
        task = self.app.tasks.get(job.type)
        if task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            # another worker with another app may know it: retried as any failure
            error = f"UnknownTask: this worker has no task {job.type!r} (known: {known})"
            return self._failure(job, ref, None, error)
        try:
            value = await self._call(task, job)
        except Snooze as snooze:
            at = utcnow() + timedelta(seconds=snooze.seconds)
            return Finish.snoozed(ref, at, hold_queue=snooze.queue)
        except Retry as retry:
            return self._failure(job, ref, task, f"Retry: {retry}", delay=retry.in_)
        except TimeoutError:
            error = f"TimeoutError: job exceeded its timeout of {task.options.timeout}s"
            return self._failure(job, ref, task, error)
        except asyncio.CancelledError:
            raise
        except ChildFailed as exc:  # an isolated run: described in its process, or its death
            if not exc.retryable:
                return Finish.failed(ref, exc.error)
            return self._failure(job, ref, task, exc.error)
        except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt is its failure too
            return self._failure(job, ref, task, describe_error(exc))
        try:
            return Finish.done(ref, encode_result(value))
        except ResultError as exc:
            # Running it again would produce the same value: fail for good.
            return Finish.failed(ref, f"ResultError: {exc}")

    @staticmethod
    def _failure(
        job: Job, ref: LeaseRef, task: Task | None, error: str, delay: float | None = None
    ) -> Finish:
        """A failed attempt: retried after the task's backoff (or `delay`) while attempts
        remain, failed for good otherwise."""
        if job.attempts >= job.max_attempts:
            return Finish.failed(ref, error)
        if delay is None:
            delay = (task.options.backoff if task else exponential_backoff)(job.attempts)
        return Finish.retry(ref, error, utcnow() + timedelta(seconds=delay))

    async def _call(self, task: Task, job: Job) -> object:
        args, kwargs = call_arguments(job.payload)
        timeout = task.options.timeout
        if task.is_async:
            if timeout is None:
                return await task.func(*args, **kwargs)
            # asyncio.timeout runs the coroutine in this task (wait_for would wrap it in
            # another one, whose SystemExit asyncio re-raises into the loop: a dead worker).
            async with asyncio.timeout(timeout):
                return await task.func(*args, **kwargs)
        if self._isolation.isolates(task):  # killed at its timeout or when cancelled
            return await self._isolation.call(
                task,
                job,
                args,
                kwargs,
                timeout=timeout,
                on_cancel=functools.partial(self.still_running.__setitem__, job.id),
            )
        call = functools.partial(contextvars.copy_context().run, task.func, *args, **kwargs)
        running = self._pool.submit(call)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(running)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The thread itself cannot be stopped; `running` (not the asyncio wrapper, which
            # is cancelled by now) tells whether it is still at work.
            if not running.done():
                self._abandon_thread()
                if isinstance(exc, asyncio.CancelledError):
                    self.still_running[job.id] = running
            raise

    def can_stop(self, job: Job) -> bool:
        """Whether cancelling `job`'s run stops its code: an async task is cancelled and an
        isolated one's process killed; a sync task's thread cannot be stopped."""
        task = self.app.tasks.get(job.type)
        return task is None or task.is_async or self._isolation.isolates(task)

    def _abandon_thread(self) -> None:
        """A sync task ran past its timeout (or lost its lease) and Python cannot stop a thread.
        Give later jobs a fresh pool so the stuck thread never takes a slot from them."""
        self.abandoned_threads += 1
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._isolation.close()  # kills and reaps the child processes (about a second at most)

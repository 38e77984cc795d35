"""Run one claimed job once: async tasks on the loop, sync tasks on a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from conveyor.app import Conveyor
from conveyor.jobs import Job
from conveyor.payloads import ResultError, encode_result
from conveyor.tasks import Task, call_arguments

MAX_ERROR_CHARS = 4000
TRACEBACK_FRAMES = 6


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run produced: `error is None` → done with `result_json`."""

    result_json: str = "null"
    error: str | None = None
    retryable: bool = True


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

    def __init__(self, app: Conveyor, threads: int) -> None:
        self.app = app
        self._threads = threads
        self._pool = self._new_pool()
        self.abandoned_threads = 0
        # job id → the thread's future of a sync task cancelled while its code still runs
        # (a thread cannot be stopped); the pool takes it to hold the job until it returns
        self.still_running: dict[int, Future[object]] = {}

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=max(1, self._threads), thread_name_prefix="conveyor-task"
        )

    async def run(self, job: Job) -> Outcome:
        task = self.app.tasks.get(job.type)
        if task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            return Outcome(
                error=f"UnknownTask: this worker has no task {job.type!r} (known: {known})"
            )
        try:
            value = await self._call(task, job)
        except TimeoutError:
            return Outcome(
                error=f"TimeoutError: job exceeded its timeout of {task.options.timeout}s"
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt is its failure too
            return Outcome(error=describe_error(exc))
        try:
            return Outcome(result_json=encode_result(value))
        except ResultError as exc:
            # Running it again would produce the same value: fail for good.
            return Outcome(error=f"ResultError: {exc}", retryable=False)

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

    def _abandon_thread(self) -> None:
        """A sync task ran past its timeout (or lost its lease) and Python cannot stop a thread.
        Give later jobs a fresh pool so the stuck thread never takes a slot from them."""
        self.abandoned_threads += 1
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

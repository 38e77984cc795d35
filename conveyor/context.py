"""The job context a running task reads (SPEC §6): `current_job()`, and the exceptions a
task raises to come back later (`Snooze`) or to fail this attempt with its own delay
(`Retry`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextvars import ContextVar

from conveyor.errors import InvalidJob
from conveyor.jobs import DELAY_MAX_SECONDS, Job, LeaseRef

_current: ContextVar[JobContext] = ContextVar("conveyor_job")

PROGRESS_MESSAGE_MAX = 1000


class JobContext:
    """What a running task knows about its job. One per run; safe to read from the task's
    thread while the worker updates it from its event loop."""

    # guards each context's pending progress report; one for all, as reports are rare and a
    # lock per run costs the worker more than the rest of the context
    _lock = threading.Lock()

    def __init__(
        self,
        job: Job,
        on_progress: Callable[[JobContext], None],
        read_dependencies: Callable[[int], list[Job]] | None = None,
    ) -> None:
        self.job = job
        self._on_progress = on_progress
        self._read_dependencies = read_dependencies
        # a plain flag: set once by the worker, read by the task's thread (an Event per job
        # cost the worker more than the rest of the context)
        self._cancelled = False
        self._progress: tuple[float, str | None] | None = None

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def fence(self) -> str:
        """Changes with every claim of the job: hand it to downstream systems as a fencing
        token (Conveyor's own writes are fenced by the same claim)."""
        return f"{self.job.id}:{self.job.attempts}:{self.job.worker}"

    @property
    def ref(self) -> LeaseRef:
        return self.job.lease_ref()

    @property
    def cancelled(self) -> bool:
        """True once the run should stop: an operator cancelled the job (within about a
        second; it ends `cancelled` whatever the task returns), or the worker is handing it
        back at shutdown, or lost its lease. A long sync task should check it and return."""
        return self._cancelled

    def cancel(self) -> None:
        """Called by the worker when the job was cancelled."""
        self._cancelled = True

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the task got (0 to 1) and what it is doing; stored on the job
        (`progress`, `progress_message`) with the next lease renewal, at most about once
        a second, not once per call."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise InvalidJob(f"progress must be a number from 0 to 1, not {fraction!r}")
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise InvalidJob(f"progress must be a number from 0 to 1, not {fraction!r}")
        if message is not None:
            if not isinstance(message, str):
                raise InvalidJob(f"progress message must be a string, not {message!r}")
            message = _storable(message[:PROGRESS_MESSAGE_MAX])
        with self._lock:
            self._progress = (float(fraction), message)
        self._on_progress(self)

    def take_progress(self) -> tuple[float, str | None] | None:
        """The progress reported since the last call, for the worker to write."""
        with self._lock:
            progress, self._progress = self._progress, None
        return progress

    def dependencies(self) -> list[Job]:
        """The jobs this one depends on (SPEC §8), read from the store now, in id order,
        each with its `status` and `result`; an empty list for a job without dependencies."""
        if not self.job.depends_on:
            return []
        if self._read_dependencies is None:
            raise LookupError("this job's store is not reachable from here")
        return self._read_dependencies(self.job.id)


def _storable(text: str) -> str:
    # PostgreSQL text takes no NUL, and a lone surrogate cannot be encoded at all
    return text.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")


def current_job() -> JobContext:
    """The context of the job this code runs for; LookupError outside a task."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job() is only available inside a running task") from None


def bind(context: JobContext) -> object:
    """Make `context` current in this context (the executor does it per run)."""
    return _current.set(context)


class Snooze(Exception):
    """Raise to put the job back to `pending` for `seconds` without using an attempt; with
    `queue=True` its whole queue starts no job on any worker for that long (a partner's
    429: fleet-wide backoff, SPEC §7)."""

    def __init__(self, seconds: float, queue: bool = False) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"Snooze(seconds): a number of seconds, not {seconds!r}")
        if not (math.isfinite(seconds) and 0 <= seconds <= DELAY_MAX_SECONDS):
            raise ValueError(f"Snooze(seconds): 0 to {DELAY_MAX_SECONDS} seconds, not {seconds!r}")
        super().__init__(f"snoozed for {seconds}s" + (" with its queue" if queue else ""))
        self.seconds = float(seconds)
        self.queue = bool(queue)

    def __reduce__(self) -> tuple[type[Snooze], tuple[float, bool]]:
        # rebuilt as raised (from an isolated task's process)
        return Snooze, (self.seconds, self.queue)


class Retry(Exception):
    """Raise to fail this attempt and run the next one after `in_` seconds instead of the
    task's backoff (the job still fails for good after max_attempts)."""

    def __init__(self, in_: float, message: str | None = None) -> None:
        if isinstance(in_, bool) or not isinstance(in_, int | float):
            raise TypeError(f"Retry(in_): a number of seconds, not {in_!r}")
        if not (math.isfinite(in_) and 0 <= in_ <= DELAY_MAX_SECONDS):
            raise ValueError(f"Retry(in_): 0 to {DELAY_MAX_SECONDS} seconds, not {in_!r}")
        super().__init__(message or f"retry requested in {in_}s")
        self.in_ = float(in_)
        self.message = message

    def __reduce__(self) -> tuple[type[Retry], tuple[float, str | None]]:
        return Retry, (self.in_, self.message)

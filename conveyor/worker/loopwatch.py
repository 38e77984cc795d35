"""Warns when a task blocks the worker's event loop.

An `async def` task that runs blocking code (CPU work, a blocking call without `await`)
holds up every other job of the process, its timers and its cancellations. A thread pings
the loop; when the loop has not answered for longer than THRESHOLD_S it logs, once per
stall, which task is holding it (leases are renewed from their own thread meanwhile, so the
job is not run twice: SPEC §6)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("conveyor.worker")

THRESHOLD_S = 1.0
PING_S = 0.25


class LoopWatch:
    def __init__(self, describe: Callable[[asyncio.Task[object] | None], str]) -> None:
        """`describe(task)` names what a task runs (the job, its type) for the warning."""
        self._describe = describe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._answered = time.monotonic()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._answered = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="conveyor-loopwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _answer(self) -> None:
        self._answered = time.monotonic()

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        warned = False
        while not self._stopping.wait(PING_S):
            if loop.is_closed():
                return
            blocked = time.monotonic() - self._answered
            if blocked <= THRESHOLD_S + PING_S:
                warned = False
            elif not warned:
                warned = True
                # read while the loop is held: the task it is running now is the culprit
                culprit = asyncio.current_task(loop)
                log.warning(
                    "the event loop has been blocked for %.1fs by %s: run blocking code in a "
                    "sync task (def, not async def) or await it in a thread",
                    blocked,
                    self._describe(culprit),
                )
            try:
                loop.call_soon_threadsafe(self._answer)
            except RuntimeError:  # the loop closed
                return

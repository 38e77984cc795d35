"""Poison tasks for tests/reliability/test_poison.py, run in real `conveyor worker` processes.

Records follow tests/support/apps.py: `$CONVEYOR_TEST_RECORD.started` gets `seq pid time`
when a run begins, `$CONVEYOR_TEST_RECORD` gets `seq pid start end` when one completes."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor

app = Conveyor()

HANG_SECONDS = 3600
MIB = 1024 * 1024


def _append(suffix: str, line: str) -> None:
    path = os.environ["CONVEYOR_TEST_RECORD"] + suffix
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _start(seq: int) -> float:
    now = time.time()
    _append(".started", f"{seq} {os.getpid()} {now:.6f}\n")
    return now


def _done(seq: int, start: float) -> None:
    _append("", f"{seq} {os.getpid()} {start:.6f} {time.time():.6f}\n")


@app.task
def record(seq: int) -> int:
    _done(seq, _start(seq))
    return seq


@app.task(max_attempts=3)
def suicide(seq: int) -> None:
    """Kills its own worker process, every time."""
    _start(seq)
    os._exit(13)


@app.task(timeout=1, max_attempts=2)
def hang(seq: int) -> None:
    """Sync, on the thread pool: sleeps far past its timeout (Python cannot stop the thread)."""
    _start(seq)
    time.sleep(HANG_SECONDS)


@app.task(timeout=1, max_attempts=2)
async def ahang(seq: int) -> None:
    """Async: awaits far past its timeout."""
    _start(seq)
    await asyncio.sleep(HANG_SECONDS)


@app.task(max_attempts=3)
def unserialisable(seq: int) -> object:
    _start(seq)
    return {"when": object()}


@app.task(max_attempts=3)
async def aunserialisable(seq: int) -> object:
    _start(seq)
    return {1, 2, 3}


@app.task(max_attempts=3)
def not_a_number(seq: int) -> float:
    _start(seq)
    return float("nan")


@app.task(max_attempts=3)
def huge(seq: int) -> str:
    """A result just over the 1 MiB limit (its JSON text is the string plus two quotes)."""
    _start(seq)
    return "x" * (MIB - 1)


@app.task(max_attempts=3)
def largest(seq: int) -> str:
    """A result exactly at the limit: stored."""
    _start(seq)
    return "x" * (MIB - 2)


@app.task(max_attempts=2)
def exits(seq: int) -> None:
    """sys.exit() in a sync task: a failure of that job, not of the worker."""
    _start(seq)
    raise SystemExit(3)


@app.task(timeout=30, max_attempts=2)
async def aexits(seq: int) -> None:
    """SystemExit raised by an async task that has a timeout."""
    _start(seq)
    raise SystemExit(3)


@app.task(max_attempts=2)
async def aexits_no_timeout(seq: int) -> None:
    _start(seq)
    raise SystemExit(3)


@app.task(timeout=1, max_attempts=1)
async def stubborn(seq: int) -> None:
    """Async, and swallows every cancellation, including its timeout's (hostile code)."""
    _start(seq)
    while True:
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass

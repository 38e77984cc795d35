"""The app that process tests run in real `conveyor worker` processes.

Each execution appends one line `seq pid start end` to $CONVEYOR_TEST_RECORD (O_APPEND
writes of one short line are atomic), so tests can prove exactly-once from the side,
not only from the status column."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor

app = Conveyor()


def _record(seq: object, start: float) -> None:
    line = f"{seq} {os.getpid()} {start:.6f} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["CONVEYOR_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _mark_start(seq: object) -> None:
    path = os.environ["CONVEYOR_TEST_RECORD"] + ".started"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{seq} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


@app.task
def record(seq: int) -> int:
    _record(seq, time.time())
    return seq


@app.task
async def arecord(seq: int) -> int:
    _record(seq, time.time())
    return seq


@app.task
def slow(seq: int, seconds: float) -> int:
    """Marks its start at once, then sleeps (sync, on the thread pool), then records."""
    start = time.time()
    _mark_start(seq)
    time.sleep(seconds)
    _record(seq, start)
    return seq


@app.task
async def aslow(seq: int, seconds: float) -> int:
    start = time.time()
    _mark_start(seq)
    await asyncio.sleep(seconds)
    _record(seq, start)
    return seq


@app.task
async def aspan(seq: int, seconds: float) -> int:
    """Async: marks its start, sleeps, and records `seq pid start end` when its run ends,
    however it ends (a cancelled run too), so overlapping runs show in the records."""
    start = time.time()
    _mark_start(seq)
    try:
        await asyncio.sleep(seconds)
    finally:
        _record(seq, start)
    return seq


@app.task(max_attempts=2)
async def ablock(seq: int, seconds: float) -> int:
    """An async task that blocks its event loop (a blocking call without await)."""
    start = time.time()
    _mark_start(seq)
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    _record(seq, start)
    return seq


@app.task(max_attempts=5)
def flaky(seq: int, failures: int) -> str:
    """Fails `failures` times (counted in the record file), then succeeds."""
    start = time.time()
    _mark_start(seq)
    path = os.environ["CONVEYOR_TEST_RECORD"] + ".started"
    with open(path) as f:
        attempts = sum(1 for line in f if line.split()[0] == str(seq))
    if attempts <= failures:
        raise RuntimeError(f"planned failure {attempts} of {failures}")
    _record(seq, start)
    return "ok"


@app.task(max_attempts=2)
def crash(seq: int) -> None:
    """Kills its own worker process (a poison job)."""
    _mark_start(seq)
    os._exit(13)


@app.task
async def loop_kind() -> str:
    """The module of the event loop the worker runs tasks on."""
    return type(asyncio.get_running_loop()).__module__

"""The app that process tests run in real `conveyor worker` processes.

Each execution appends one line `seq pid start end` to $CONVEYOR_TEST_RECORD (O_APPEND
writes of one short line are atomic), so tests can prove exactly-once from the side,
not only from the status column."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, Retry, Snooze, current_job

app = Conveyor()


def _mark(suffix: str, line: str) -> None:
    """Append one line to $CONVEYOR_TEST_RECORD + suffix, atomically (O_APPEND)."""
    path = os.environ["CONVEYOR_TEST_RECORD"] + suffix
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _record(seq: object, start: float) -> None:
    _mark("", f"{seq} {os.getpid()} {start:.6f} {time.time():.6f}\n")


def _mark_start(seq: object) -> None:
    _mark(".started", f"{seq} {os.getpid()} {time.time():.6f}\n")


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


def _starts(seq: int) -> int:
    try:
        with open(os.environ["CONVEYOR_TEST_RECORD"] + ".started") as f:
            return sum(1 for line in f if line.split()[0] == str(seq))
    except FileNotFoundError:
        return 0


@app.task
def until_cancelled(seq: int, seconds: float = 60) -> str:
    """Sync: works in small steps until `current_job().cancelled` (or `seconds` pass);
    records `seq pid start end` when it stops."""
    start = time.time()
    _mark_start(seq)
    ctx = current_job()
    while not ctx.cancelled and time.time() - start < seconds:
        time.sleep(0.02)
    _record(seq, start)
    return "stopped" if ctx.cancelled else "finished"


@app.task
def progressing(seq: int, seconds: float = 60) -> str:
    """Reports progress 0.5 "half way", then waits (until cancelled or `seconds` pass)."""
    _mark_start(seq)
    ctx = current_job()
    ctx.progress(0.25, "a quarter")
    ctx.progress(0.5, "half way")  # coalesced: only the last one is written
    start = time.time()
    while not ctx.cancelled and time.time() - start < seconds:
        time.sleep(0.02)
    return "ok"


@app.task
def snoozer(seq: int, seconds: float = 1) -> int:
    """Snoozes on its first run, succeeds on the second."""
    _mark_start(seq)
    if _starts(seq) == 1:
        raise Snooze(seconds)
    return current_job().attempt


@app.task
async def aretrier(seq: int, in_: float = 5) -> str:
    """Asks for a retry in `in_` seconds on its first run (recording its end), then returns
    the fence of each run."""
    _mark_start(seq)
    fence = current_job().fence
    _mark(".fences", f"{seq} {fence}\n")
    if _starts(seq) == 1:
        _record(seq, time.time())
        raise Retry(in_=in_)
    return fence


@app.task
def queue_snoozer(seq: int, seconds: float = 2) -> int:
    """Holds its whole queue for `seconds` on its first run (a partner's 429), then succeeds."""
    _mark_start(seq)
    if _starts(seq) == 1:
        raise Snooze(seconds, queue=True)
    return current_job().attempt


@app.task
def gather(seq: int) -> dict[str, object]:
    """A workflow's fan-in step: records its run and returns what its dependencies
    returned and how they ended (current_job().dependencies())."""
    start = time.time()
    deps = current_job().dependencies()
    _record(seq, start)
    return {
        "seq": seq,
        "results": [dep.result for dep in deps],
        "statuses": [dep.status.value for dep in deps],
        "finished_before_start": all(
            dep.finished_at is not None and dep.finished_at.timestamp() <= start for dep in deps
        ),
    }


@app.task(max_attempts=1)
def explode(seq: int) -> None:
    """Fails for good at its first attempt."""
    _record(seq, time.time())
    raise RuntimeError(f"explode {seq}")

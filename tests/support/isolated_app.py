"""Tasks for the process-isolation tests (SPEC §6): run in real `conveyor worker` processes
by tests/process/test_isolation.py and in-process by tests/runtime/test_isolation.py.

Records follow tests/support/apps.py: `$CONVEYOR_TEST_RECORD.started` gets `seq pid time`
when a run begins, `$CONVEYOR_TEST_RECORD` gets `seq pid start end [extra]` when one ends.
The pid is the process that ran the task: a child process for an isolated task."""

from __future__ import annotations

import os
import signal
import sys
import time

from conveyor import Conveyor
from conveyor.context import Retry, Snooze, current_job

app = Conveyor()

HANG_SECONDS = 3600
MIB = 1024 * 1024
_leaked: list[bytearray] = []


def _append(suffix: str, line: str) -> None:
    path = os.environ.get("CONVEYOR_TEST_RECORD")
    if path is None:  # in-process tests read what the task returns instead
        return
    fd = os.open(path + suffix, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _start(seq: int) -> float:
    now = time.time()
    _append(".started", f"{seq} {os.getpid()} {now:.6f}\n")
    return now


def _done(seq: int, start: float, extra: str = "") -> None:
    _append("", f"{seq} {os.getpid()} {start:.6f} {time.time():.6f}{extra}\n")


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@app.task(isolated=True)
def record(seq: int) -> int:
    _done(seq, _start(seq))
    return os.getpid()


@app.task
def plain(seq: int) -> int:
    """Not isolated: a thread of the worker, unless the worker runs `--pool process`."""
    _done(seq, _start(seq))
    return os.getpid()


@app.task
async def aplain(seq: int) -> int:
    """Async: always on the worker's event loop."""
    _done(seq, _start(seq))
    return os.getpid()


@app.task(isolated=True, timeout=1, max_attempts=1)
def hang(seq: int) -> None:
    _start(seq)
    time.sleep(HANG_SECONDS)


@app.task(isolated=True, timeout=1, max_attempts=1)
def stubborn(seq: int) -> None:
    """Ignores SIGTERM: only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _start(seq)
    time.sleep(HANG_SECONDS)


@app.task(isolated=True, max_attempts=1)
def exit13(seq: int) -> None:
    _start(seq)
    sys.stdout.flush()
    os._exit(13)


@app.task(isolated=True, max_attempts=1)
def segfault(seq: int) -> None:
    _start(seq)
    os.kill(os.getpid(), signal.SIGSEGV)


@app.task(isolated=True)
def leak(seq: int, mib: int) -> int:
    """Keeps `mib` MiB more on every run (touched, so resident), records its RSS after."""
    start = _start(seq)
    block = bytearray(mib * MIB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    _leaked.append(block)
    rss = rss_bytes()
    _done(seq, start, f" {rss}")
    return rss


@app.task(isolated=True)
def span(seq: int, seconds: float) -> int:
    """Marks its start, sleeps, and records `seq pid start end` when it ends, also when it
    is stopped by SIGTERM (the record is then written by the handler, just before the
    process exits), so the records show whether two runs overlapped."""
    start = _start(seq)

    def stopped(signum: int, frame: object) -> None:
        _done(seq, start, " killed")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    time.sleep(seconds)
    _done(seq, start)
    return os.getpid()


@app.task(isolated=True)
def crunch(seq: int, loops: int) -> int:
    """CPU-bound: `loops` iterations of arithmetic (bench/isolation.py)."""
    start = _start(seq)
    total = 0
    for i in range(loops):
        total += i * i % 7
    _done(seq, start)
    return total


@app.task(isolated=True)
def noop() -> None:
    """For measuring the per-job cost of isolation."""


@app.task
def thread_noop() -> None:
    """The same, on the worker's thread pool."""


@app.task(isolated=True)
def echo(value: object = None) -> object:
    return value


@app.task(isolated=True)
def unpicklable() -> object:
    return lambda: 1


@app.task(isolated=True)
def unserialisable() -> object:
    return {1, 2, 3}


@app.task(isolated=True)
def boom(message: str) -> None:
    raise ValueError(message)


@app.task(isolated=True)
def boom_unpicklable() -> None:
    class Unreachable(Exception):
        pass

    raise Unreachable("defined inside the task")


@app.task(isolated=True)
def exits() -> None:
    sys.exit(3)


@app.task(isolated=True)
def snooze() -> None:
    raise Snooze(30)


@app.task(isolated=True)
def retry_later() -> None:
    raise Retry(120, "partner busy")


@app.task(isolated=True)
def progress() -> dict[str, object]:
    ctx = current_job()
    ctx.progress(0.5, "half way")
    return {"id": ctx.job.id, "attempt": ctx.attempt, "cancelled": ctx.cancelled}


@app.task(isolated=True)
def enqueue_other(seq: int) -> int:
    """An isolated task that enqueues: the child reaches the worker's store."""
    return app.enqueue("plain", {"seq": seq}).id

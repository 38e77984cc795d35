"""The app the chaos runner (bench/chaos.py) runs in real `conveyor worker` processes.

Every execution is recorded from the side, not only in the job's status column:
`$CHAOS_RECORD.started` gets `seq pid start job_id` when a run begins, `$CHAOS_RECORD` gets
`seq pid start end job_id` when its body completes (times from time.time(), so runs of
different jobs compare: the workflow checks need a dependent's start after its
dependencies' ends). Each line is one O_APPEND write of a short line, which is atomic, so
concurrent processes never interleave and a SIGKILL leaves either the whole line or none
of it.
"""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, current_job

app = Conveyor()

# A job interrupted by SIGKILL is recovered and costs an attempt; chaos kills often, so
# allow many (handing back at shutdown costs none). Exhausting them would be reported
# as a failed job, not hidden.
MAX_ATTEMPTS = 50


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _started(seq: int) -> float:
    start = time.time()
    job_id = current_job().job.id
    _append(os.environ["CHAOS_RECORD"] + ".started", f"{seq} {os.getpid()} {start:.6f} {job_id}\n")
    return start


def _finished(seq: int, start: float) -> None:
    end = time.time()
    job_id = current_job().job.id
    _append(os.environ["CHAOS_RECORD"], f"{seq} {os.getpid()} {start:.6f} {end:.6f} {job_id}\n")


@app.task(max_attempts=MAX_ATTEMPTS)
def chaos(seq: int, ms: float = 0.0) -> int:
    """Sync (thread pool): record the start, work `ms` milliseconds, record the end."""
    start = _started(seq)
    if ms:
        time.sleep(ms / 1000)
    _finished(seq, start)
    return seq


@app.task(max_attempts=MAX_ATTEMPTS)
async def achaos(seq: int, ms: float = 0.0) -> int:
    """Async (event loop): the same."""
    start = _started(seq)
    if ms:
        await asyncio.sleep(ms / 1000)
    _finished(seq, start)
    return seq


@app.task
async def noop() -> None:
    """For the soak run (bench/soak.py): nothing at all."""

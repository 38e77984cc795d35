"""Tasks the benchmarks run: each returns the time it started, so latency and drain
are read from the results without any side channel."""

from __future__ import annotations

import asyncio
import time

from conveyor import Conveyor

app = Conveyor()


@app.task
async def noop() -> float:
    return time.time()


@app.task
def noop_sync() -> float:
    return time.time()


@app.task
async def sleep10ms() -> float:
    start = time.time()
    await asyncio.sleep(0.01)
    return start

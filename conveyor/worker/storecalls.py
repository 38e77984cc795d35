"""Run synchronous Store calls off the event loop, on a small bounded thread pool."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Claims, completions and the reaper may overlap; three threads cover that, and bounding
# them bounds the connections a worker process opens. Heartbeats run on a thread of their
# own (worker/leases.py): four store calls at once at most, as the PostgreSQL pool allows.
STORE_THREADS = 3


class StoreCalls:
    def __init__(self, threads: int = STORE_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-store")

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

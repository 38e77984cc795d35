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
    def __init__(self, threads: int = STORE_THREADS, *, serial_writes: bool = False) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-store")
        # A store whose writes run one at a time anyway (Store.serial_writes) gets the
        # worker's claims and outcomes on one thread of their own: a SQLite connection's
        # page cache is dropped whenever another connection wrote, so claims spread over
        # the pool's threads would each start cold.
        self._hot = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-store-hot")
            if serial_writes
            else self._pool
        )

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def hot(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A claim or an outcome: the worker's steady stream of writes."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hot, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        if self._hot is not self._pool:
            self._hot.shutdown(wait=True)

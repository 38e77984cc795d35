"""The worker runtime: asyncio orchestration over a synchronous Store."""

from conveyor.worker.pool import PoolConfig, WorkerPool

__all__ = ["PoolConfig", "WorkerPool"]

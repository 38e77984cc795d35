"""RedisLoopClaims: the worker's finish_and_claim awaited on its event loop (redis.asyncio):
the same op of the same script as RedisStore.finish_and_claim, with its reply token, but
no hop to a store thread and back on the way from a wake-up to a started job."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from conveyor.jobs import Finish, Job, JobStatus
from conveyor.stores.base import LoopClaims
from conveyor.stores.redis.scripts import LoopScripts, connect_async
from conveyor.stores.redis.store import claim_args, claimed, finish_args, outcomes


class RedisLoopClaims(LoopClaims):
    def __init__(self, url: str) -> None:
        self._client = connect_async(url)  # connects at the first claim
        self._scripts = LoopScripts(self._client)

    async def finish_and_claim(
        self,
        finishes: Sequence[Finish],
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
    ) -> tuple[dict[int, JobStatus], list[Job]]:
        if (queues is not None and not queues) or limit < 1:
            limit = 0  # the script claims nothing then
        args = [len(finishes), *finish_args(finishes), *claim_args(worker, queues, limit, lease)]
        applied, hashes = await self._scripts.run_again_safe("finish_and_claim", args)
        return outcomes(applied), claimed(hashes)

    async def close(self) -> None:
        await self._client.aclose()

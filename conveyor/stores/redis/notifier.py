"""RedisNotifier and RedisFinishListener: Redis pub/sub on a connection of their own. The
scripts PUBLISH on `wake` (work may be available), `cancelled` (a held job's id) and
`finished` (a finished job's id). Pub/sub is a hint, never the data: a message missed while
the connection was down costs a poll period, and the listener then answers None."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis
import redis.asyncio as aioredis

from conveyor.errors import StoreUnavailable
from conveyor.stores.base import FinishListener, Notifier

# While Redis cannot be reached, try again at most this often.
RETRY_S = 0.5


def _subscriber(url: str) -> tuple[redis.Redis, redis.client.PubSub]:
    """A connection of its own for pub/sub (a subscribed connection can do nothing else)."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    return client, client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]


class RedisNotifier(Notifier):
    """Wakes fetchers on `wake` messages and tells cancel listeners of `cancelled` ids, from
    a task on the worker's event loop (no thread between a message and the fetcher), that
    reconnects after a Redis restart (and then wakes, since enqueues may have gone unheard
    meanwhile)."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self._url = url
        self._prefix = prefix
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._listen(), name="conveyor-redis-notify")

    async def _listen(self) -> None:
        wake, cancelled = self._prefix + "wake", self._prefix + "cancelled"
        while True:
            client = aioredis.Redis.from_url(
                self._url, decode_responses=True, socket_connect_timeout=5
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(wake, cancelled)
                self.wake_local()  # enqueues before (or during a reconnect) went unheard
                async for message in pubsub.listen():
                    if message["channel"] == cancelled:
                        self._job_cancelled(int(message["data"]))
                    else:
                        self.wake_local()
            except (redis.RedisError, OSError):
                await asyncio.sleep(RETRY_S)  # Redis is down: try again
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class RedisFinishListener(FinishListener):
    """The ids published on `finished`, for the process's `Conveyor.wait` thread."""

    # A subscriber nobody reads fills its output buffer on the server, which then drops it.
    drains_when_idle = True

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._channel = prefix + "finished"
        self._client: redis.Redis | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._missed = False

    def connect(self) -> None:
        self.close()
        try:
            self._client, self._pubsub = _subscriber(self._url)
            self._pubsub.subscribe(self._channel)
            self._pubsub.get_message(timeout=0)  # reads the subscription's confirmation
        except redis.RedisError as exc:
            self.close()
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc

    def wait(self, timeout: float) -> frozenset[int] | None:
        if self._pubsub is None:
            try:
                self.connect()
            except StoreUnavailable:
                time.sleep(min(timeout, RETRY_S))
                return None
            return None  # finishes before this connection went unheard
        ids: set[int] = set()
        try:
            message = self._pubsub.get_message(timeout=timeout)
            while message is not None:
                ids.add(int(message["data"]))
                message = self._pubsub.get_message(timeout=0)
        except redis.RedisError:
            self.close()
            return None
        return frozenset(ids)

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None
        if self._client is not None:
            self._client.close()
            self._client = None

"""The Redis store's connection and its one Lua script (SPEC §10: each transition atomic).

The .lua files beside this module are joined into one script, `common.lua` first and
`main.lua` last; a call names its op (`claim`, `finish`, ...). It is loaded once per server
(SCRIPT LOAD) and run by its SHA1 (EVALSHA).

redis-py retries a command on a dropped connection by default. Sending a transition again
after its reply was lost could apply it twice (two jobs for one enqueue, a claim whose jobs
nobody runs), so this client never retries by itself: the calls that are safe to send again
carry a reply token (`main.lua` answers a repeat with the first reply) and are sent once more
here; any other lost reply is StoreUnavailable, as on the other stores.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from conveyor.errors import StoreUnavailable
from conveyor.fleet import BOUNDS

log = logging.getLogger("conveyor.stores.redis")

# Every key lives under this hash tag, so one script may touch them all (docs/architecture.md).
PREFIX = "{conveyor}:"
# The key that routes the script to the slot of PREFIX (Redis Cluster).
ROUTE_KEY = PREFIX + "seq"
PARTS = ("common", "enqueue", "claim", "finish", "leases", "operators", "fleet", "main")
CONNECT_TIMEOUT_S = 5.0
# A command that gets no answer in this long fails (StoreUnavailable) instead of hanging.
SOCKET_TIMEOUT_S = 30.0


def _source() -> str:
    folder = resources.files("conveyor.stores.redis")
    bounds = ", ".join(str(round(bound * 1_000_000)) for bound in BOUNDS)
    head = f"local BOUNDS_US = {{{bounds}}}\n"  # the buckets of conveyor/fleet.py, in µs
    return head + "\n".join((folder / f"{name}.lua").read_text() for name in PARTS)


SOURCE = _source()
SHA = hashlib.sha1(SOURCE.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """Microseconds since the epoch, exact (a float timestamp would round)."""
    return (value - EPOCH) // MICROSECOND


def from_us(value: int | str) -> datetime:
    return EPOCH + int(value) * MICROSECOND


# Both clients' settings: replies as text, bounded waits, and no retry of their own.
_CLIENT: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": CONNECT_TIMEOUT_S,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "health_check_interval": 10,
}


def connect(url: str) -> redis.Redis:
    """A client that decodes replies as text and never retries a command by itself."""
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **_CLIENT)


def connect_async(url: str) -> aioredis.Redis:
    """`connect`'s client for an event loop (redis.asyncio), with the same settings."""
    return aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **_CLIENT)


def _argv(op: str, token: str, args: list[object], now: datetime | None) -> list[Any]:
    return [PREFIX, "" if now is None else str(to_us(now)), op, token, *args]


def unavailable(exc: redis.RedisError) -> StoreUnavailable:
    return StoreUnavailable(f"Redis unreachable: {str(exc).splitlines()[0] if str(exc) else exc!r}")


class Scripts:
    """Runs ops of the store's script on one client."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def run(self, op: str, args: list[object], now: datetime | None = None) -> Any:
        """Run `op` once; StoreUnavailable when Redis cannot be reached or its reply was lost."""
        try:
            return self._eval(op, "", args, now)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unavailable(exc) from exc

    def run_again_safe(self, op: str, args: list[object], now: datetime | None = None) -> Any:
        """Run `op` with a reply token, sent a second time when the first reply was lost: the
        server answers the repeat with the first run's reply, so the op applies once."""
        token = uuid.uuid4().hex
        try:
            return self._eval(op, token, args, now)
        except (redis.ConnectionError, redis.TimeoutError) as first:
            log.info("Redis connection lost during %s; sending it again: %s", op, first)
            try:
                return self._eval(op, token, args, now)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise unavailable(exc) from exc

    def _eval(self, op: str, token: str, args: list[object], now: datetime | None) -> Any:
        argv = _argv(op, token, args, now)
        try:
            return self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)
        except redis.exceptions.NoScriptError:
            self._client.script_load(SOURCE)  # a new or restarted server
            return self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)


class LoopScripts:
    """`Scripts.run_again_safe` on an event loop's client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def run_again_safe(self, op: str, args: list[object]) -> Any:
        token = uuid.uuid4().hex
        try:
            return await self._eval(op, token, args)
        except (redis.ConnectionError, redis.TimeoutError) as first:
            log.info("Redis connection lost during %s; sending it again: %s", op, first)
            try:
                return await self._eval(op, token, args)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise unavailable(exc) from exc

    async def _eval(self, op: str, token: str, args: list[object]) -> Any:
        argv = _argv(op, token, args, None)
        try:
            return await self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)
        except redis.exceptions.NoScriptError:
            await self._client.script_load(SOURCE)
            return await self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)


def warn_if_lossy(client: redis.Redis, shown_url: str) -> bool:
    """SPEC §10: at start, log a warning when an acknowledged job could be lost (a restart
    without an append-only file, a crash within appendfsync's delay). False when Redis could
    not be asked (unreachable: ask again at the next use)."""
    try:
        settings = cast(dict[str, str], client.config_get("append*"))
    except redis.ResponseError:  # CONFIG is refused (a managed Redis): nothing to read
        log.info("cannot read the persistence settings of Redis at %s (CONFIG GET refused)",
                 shown_url)  # fmt: skip
        return True
    except redis.RedisError:
        return False
    _warn(settings.get("appendonly"), settings.get("appendfsync"), shown_url)
    return True


def _warn(appendonly: str | None, fsync: str | None, shown_url: str) -> None:
    if appendonly != "yes":
        log.warning(
            "Redis at %s runs with appendonly %s: acknowledged jobs can be lost when it "
            "restarts (set appendonly yes and appendfsync always)",
            shown_url,
            appendonly,
        )
    elif fsync == "everysec":
        log.warning(
            "Redis at %s runs with appendfsync everysec: up to 1 s of acknowledged jobs can be "
            "lost when its machine crashes (set appendfsync always)",
            shown_url,
        )
    elif fsync != "always":
        log.warning(
            "Redis at %s runs with appendfsync %s: acknowledged jobs can be lost when its "
            "machine crashes (set appendfsync always)",
            shown_url,
            fsync,
        )

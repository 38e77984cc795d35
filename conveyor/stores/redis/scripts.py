"""The Redis store's connection and its Lua code (SPEC §10: each transition atomic).

The .lua files beside this module are joined, `common.lua` first and `main.lua` last, into
one function library (Redis 7 and later: FUNCTION LOAD once per server, then FCALL), or into
one script on an older Redis (SCRIPT LOAD, then EVALSHA). A call names its op (`claim`,
`finish`, ...). A library's top level, which builds the helpers and the op table, runs once
when it loads; a script's runs at every call (docs/performance.md, "Redis functions").

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


def _code() -> str:
    """The .lua files joined: the helpers, the ops, and `run(argv)`, which runs one call."""
    folder = resources.files("conveyor.stores.redis")
    bounds = ", ".join(str(round(bound * 1_000_000)) for bound in BOUNDS)
    head = f"local BOUNDS_US = {{{bounds}}}\n"  # the buckets of conveyor/fleet.py, in µs
    return head + "\n".join((folder / f"{name}.lua").read_text() for name in PARTS)


CODE = _code()
# The library and its one function are named after the code, so workers of two versions
# (a rolling deploy) each call their own.
FUNCTION = "conveyor_" + hashlib.sha1(CODE.encode()).hexdigest()[:16]  # noqa: S324
LIBRARY = (
    f"#!lua name={FUNCTION}\n{CODE}\n"
    f"redis.register_function('{FUNCTION}', function(_, argv) return run(argv) end)\n"
)
SCRIPT = CODE + "\nreturn run(ARGV)\n"  # for a Redis without functions (before 7.0)
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1


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


def not_loaded(exc: redis.ResponseError) -> bool:
    """FCALL's error for a library this server has not loaded (new, or restarted without
    its data)."""
    return "function not found" in str(exc).lower()


def already_loaded(exc: redis.ResponseError) -> bool:
    """FUNCTION LOAD's error when another process loaded the same library first."""
    return "already exists" in str(exc).lower()


def refused(exc: redis.ResponseError) -> bool:
    """A Redis before 7.0 knows no FCALL, and a user may not be allowed FUNCTION LOAD: such a
    client runs the same code as a script instead."""
    message = str(exc)
    return "unknown command" in message.lower() or message.startswith("NOPERM")


class Scripts:
    """Runs the store's ops on one client: as a function where Redis has them, else as a
    script."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._functions = True

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
        if self._functions:
            try:
                return self._fcall(argv)
            except redis.ResponseError as exc:
                if not refused(exc):
                    raise
                self._functions = False
        try:
            return self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)
        except redis.exceptions.NoScriptError:
            self._client.script_load(SCRIPT)  # a new or restarted server
            return self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)

    def _fcall(self, argv: list[Any]) -> Any:
        try:
            return self._client.fcall(FUNCTION, 1, ROUTE_KEY, *argv)
        except redis.ResponseError as exc:
            if not not_loaded(exc):
                raise
        try:
            self._client.function_load(LIBRARY)
        except redis.ResponseError as exc:
            if not already_loaded(exc):
                raise
        return self._client.fcall(FUNCTION, 1, ROUTE_KEY, *argv)


class LoopScripts:
    """`Scripts.run_again_safe` on an event loop's client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._functions = True

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
        if self._functions:
            try:
                return await self._fcall(argv)
            except redis.ResponseError as exc:
                if not refused(exc):
                    raise
                self._functions = False
        try:
            return await self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)
        except redis.exceptions.NoScriptError:
            await self._client.script_load(SCRIPT)
            return await self._client.evalsha(SHA, 1, ROUTE_KEY, *argv)

    async def _fcall(self, argv: list[Any]) -> Any:
        try:
            return await self._client.fcall(FUNCTION, 1, ROUTE_KEY, *argv)
        except redis.ResponseError as exc:
            if not not_loaded(exc):
                raise
        try:
            await self._client.function_load(LIBRARY)
        except redis.ResponseError as exc:
            if not already_loaded(exc):
                raise
        return await self._client.fcall(FUNCTION, 1, ROUTE_KEY, *argv)


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

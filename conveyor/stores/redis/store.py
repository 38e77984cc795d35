"""RedisStore: the job store on Redis (SPEC §10). Each transition is one op of the store's
Lua script (scripts.py), so it is atomic; reads are plain commands, pipelined.

Keys (docs/architecture.md, "The Redis store"): every key lives under the hash tag
`{conveyor}`: a hash per job (`job:<id>`), sorted sets as indexes (by status, queue, type,
lease deadline, finish time; the pending jobs of each queue by run_at and, once due, by
priority), `counts` by queue and status, queue settings, the registry, the aggregates.

Time: the script reads the server's clock (TIME) for leases and timestamps unless the
caller passes `now` (tests move time), so the processes' clocks do not matter. Times are
integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn, Unpack, cast

import redis

from conveyor.errors import StoreUnavailable
from conveyor.fleet import LIVE_LEASES, MinuteStats, WorkerInfo
from conveyor.jobs import (
    FINISHED,
    ID_MAX,
    STATUSES,
    BulkFilter,
    EnqueueResult,
    Finish,
    Job,
    JobFilter,
    JobStatus,
    LeaseRef,
    NewJob,
    QueueChanges,
    QueueSettings,
    RateLimit,
    RecoveryResult,
    Renewal,
)
from conveyor.periodic import Periodic, PeriodicState
from conveyor.stores.base import (
    FinishListener,
    LoopClaims,
    Notifier,
    Store,
    id_batches,
    prune_batches,
    refusal,
)
from conveyor.stores.redis import rows
from conveyor.stores.redis.notifier import RedisFinishListener, RedisNotifier
from conveyor.stores.redis.scripts import (
    PREFIX,
    Scripts,
    connect,
    from_us,
    to_us,
    unavailable,
    warn_if_lossy,
)
from conveyor.stores.redis.workflows import plain_args, plan_batch

SCHEMA_VERSION = 1
# Jobs read per round trip by listings and bulk reads.
READ_CHUNK = 500
# A batch with dependencies is planned again when what it was planned from changed meanwhile.
PLAN_ATTEMPTS = 20
NO_JOB = -1


def _us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://…@{tail}" if at else url


class RedisStore(Store):
    """Durable job state in Redis; connects lazily. A dropped connection is StoreUnavailable
    for that call (redis-py reconnects at the next one); see scripts.py for the calls that are
    sent again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._scripts: Scripts | None = None  # the client's, which remembers how to call
        self._checked_durability = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisStore({redact(self.url)!r})"

    # -- connections ---------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        client = self._client
        if client is None or not self._checked_durability:
            with self._lock:  # one client (and its pool) per store, whichever thread came first
                if self._client is None:
                    self._client = connect(self.url)
                    self._scripts = Scripts(self._client)
                client = self._client
                if not self._checked_durability:  # SPEC §10: once, at the store's first use
                    self._checked_durability = warn_if_lossy(client, redact(self.url))
        return client

    def _ops(self) -> Scripts:
        self._redis()
        assert self._scripts is not None  # made with the client
        return self._scripts

    def _read(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        """Read commands in one round trip (a pipeline without MULTI)."""
        if not commands:
            return []
        pipe = self._redis().pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        try:
            return pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unavailable(exc) from exc

    def _read_one(self, *command: str) -> Any:
        return self._read([command])[0]

    def _jobs(self, ids: Sequence[int | str]) -> list[Job | None]:
        found = self._read([("HGETALL", f"{PREFIX}job:{i}") for i in ids])
        return [rows.job(h) if h else None for h in found]

    def _server_us(self) -> int:
        seconds, micros = self._read_one("TIME")
        return int(seconds) * 1_000_000 + int(micros)

    # -- lifecycle -----------------------------------------------------------------------
    def migrate(self) -> int:
        """Redis has no schema: only the version is recorded."""
        self._read_one("SET", PREFIX + "schema_version", str(SCHEMA_VERSION))
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        return int(self._read_one("GET", PREFIX + "schema_version") or 0)

    @property
    def latest_version(self) -> int:
        return SCHEMA_VERSION

    def ping(self) -> None:
        try:
            self._redis().ping()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def notifier(self) -> Notifier:
        return RedisNotifier(self.url, PREFIX)

    def finish_listener(self) -> FinishListener:
        return RedisFinishListener(self.url, PREFIX)

    # -- producers -----------------------------------------------------------------------
    def enqueue(self, job: NewJob, *, connection: object | None = None) -> EnqueueResult:
        if connection is not None:
            raise TypeError("the Redis store cannot join a caller's database transaction")
        return self.enqueue_many([job])[0]

    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        if not jobs:
            return []
        if any(job.has_dependencies for job in jobs):
            replies = self._enqueue_planned(jobs)
        else:
            replies = self._ops().run_again_safe("enqueue", [0, *plain_args(jobs)])
        return [EnqueueResult(rows.job_of(flat), bool(created)) for created, _, flat in replies]

    def _enqueue_planned(self, jobs: Sequence[NewJob]) -> list[list[Any]]:
        """A batch with dependencies (SPEC §8): planned here from what the store holds now by
        conveyor/dependencies.py, inserted by the script only if that still holds."""
        last = int(self._read_one("INCRBY", PREFIX + "seq", str(len(jobs))))
        ids = list(range(last - len(jobs) + 1, last + 1))
        for _ in range(PLAN_ATTEMPTS):
            args = plan_batch(jobs, ids, self._read)
            replies = self._ops().run_again_safe("enqueue", args)
            if replies != "conflict":
                return cast(list[list[Any]], replies)
        raise StoreUnavailable("the dependencies of a batch kept changing while it was enqueued")

    # -- workers -------------------------------------------------------------------------
    def claim(
        self,
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
    ) -> list[Job]:
        if limit < 1 or (queues is not None and not queues):
            return []
        args = claim_args(worker, queues, limit, lease)
        return claimed(self._ops().run_again_safe("claim", args, now))

    def finish_and_claim(
        self,
        finishes: Sequence[Finish],
        *,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
        now: datetime | None = None,
    ) -> tuple[dict[int, JobStatus], list[Job]]:
        if (queues is not None and not queues) or limit < 1:
            return self.finish_many(finishes, now=now), []
        args = [len(finishes), *finish_args(finishes), *claim_args(worker, queues, limit, lease)]
        applied, hashes = self._ops().run_again_safe("finish_and_claim", args, now)
        return outcomes(applied), claimed(hashes)

    def loop_claims(self) -> LoopClaims:
        from conveyor.stores.redis.loopclaims import RedisLoopClaims  # it imports this module

        return RedisLoopClaims(self.url)

    def heartbeat(
        self,
        refs: Sequence[LeaseRef],
        *,
        lease: timedelta,
        progress: Mapping[int, tuple[float, str | None]] | None = None,
        now: datetime | None = None,
    ) -> Renewal:
        if not refs:
            return Renewal()
        progress = progress or {}
        args: list[object] = [_us(lease)]
        for ref in refs:
            fraction, message = progress.get(ref.job_id, (None, None))
            shown = "" if fraction is None else repr(float(fraction))  # "": nothing reported
            args += [ref.job_id, ref.worker, ref.attempt, shown, message or ""]
        lost, stop = self._ops().run("heartbeat", args, now)
        return Renewal(lost=set(lost), stop=set(stop))

    def finish_many(
        self, finishes: Sequence[Finish], *, now: datetime | None = None
    ) -> dict[int, JobStatus]:
        if not finishes:
            return {}
        return outcomes(self._ops().run("finish", finish_args(finishes), now))

    def release(
        self,
        refs: Sequence[LeaseRef],
        *,
        now: datetime | None = None,
        not_before: datetime | None = None,
    ) -> set[int]:
        if not refs:
            return set()
        args: list[object] = ["" if not_before is None else to_us(not_before)]
        for ref in refs:
            args += [ref.job_id, ref.worker, ref.attempt]
        return set(self._ops().run("release", args, now))

    def recover_expired(self, *, limit: int = 1000, now: datetime | None = None) -> RecoveryResult:
        requeued, failed = self._ops().run("recover", [limit], now)
        return RecoveryResult(requeued=list(requeued), failed=list(failed))

    # -- operators -----------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job | None:
        return self._jobs([job_id])[0]

    def dependency_jobs(self, job_id: int) -> list[Job]:
        text = self._read_one("HGET", f"{PREFIX}job:{job_id}", "depends_on")
        return [job for job in self._jobs(rows.ids(text)) if job is not None]

    def dependents(self, job_id: int, *, limit: int = 100) -> list[Job]:
        ids = self._read_one("ZRANGE", f"{PREFIX}dependents:{job_id}", "0", str(limit - 1))
        return [job for job in self._jobs(ids) if job is not None]

    def starts(self, job_id: int) -> list[datetime] | None:
        exists, times = self._read(
            [("EXISTS", f"{PREFIX}job:{job_id}"), ("LRANGE", f"{PREFIX}starts:{job_id}", "0", "-1")]
        )
        return [from_us(t) for t in times] if exists else None

    def finished_among(self, job_ids: Sequence[int]) -> dict[int, Job | None]:
        wanted = list(dict.fromkeys(job_ids))
        out: dict[int, Job | None] = {}
        for job_id, job in zip(wanted, self._jobs(wanted), strict=True):
            if job is None or job.status in FINISHED:
                out[job_id] = job
        return out

    def list_jobs(self, query: JobFilter) -> list[Job]:
        index = _index(query.status, query.queue, query.type)
        top = "+inf" if query.before_id is None else f"({query.before_id}"
        out: list[Job] = []
        while len(out) < query.limit:
            ids = self._read_one(
                "ZREVRANGEBYSCORE", index, top, "-inf", "LIMIT", "0", str(READ_CHUNK)
            )
            out += [j for j in self._jobs(ids) if j is not None and _matches(j, query)]
            if len(ids) < READ_CHUNK:
                break
            top = f"({ids[-1]}"
        return out[: query.limit]

    def cancel(self, job_id: int, *, now: datetime | None = None) -> Job:
        return self._one(job_id, "cancel", now)

    def retry(self, job_id: int, *, now: datetime | None = None) -> Job:
        return self._one(job_id, "retry", now)

    def _one(self, job_id: int, action: str, now: datetime | None) -> Job:
        """`action` on one job; the job as the same script left it (a worker may claim a
        retried job at once), or why it did not apply."""
        if not 1 <= job_id <= ID_MAX:
            raise refusal(job_id, None, action)
        applied, flat = self._ops().run(f"{action}_job", [job_id], now)
        if not applied:
            self._refuse(job_id, action)
        return rows.job_of(flat)

    def _refuse(self, job_id: int, action: str) -> NoReturn:
        job = self.get_job(job_id)
        blocker = None
        if job is not None and action == "retry":
            for _, dependency, status in self._ops().run("retry_blocked", [job_id]):
                blocker = (int(dependency), str(status))
        raise refusal(job_id, None if job is None else job.status, action, blocker)

    def cancel_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        return self._each_batch("cancel", ids, status, now)

    def retry_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        return self._each_batch("retry", ids, status, now)

    def _each_batch(
        self, op: str, ids: Sequence[int], status: JobStatus | None, now: datetime | None
    ) -> list[int]:
        done: list[int] = []
        for batch in id_batches(ids):  # one script (one short transaction) per batch
            done += self._ops().run(op, ["" if status is None else status.value, *batch], now)
        return sorted(done)

    def bulk_bounds(self, query: BulkFilter) -> tuple[int, int] | None:
        low = self._bulk_walk(query, "ZRANGEBYSCORE", "-inf", "+inf", 1)
        if not low:
            return None
        return low[0], self._bulk_walk(query, "ZREVRANGEBYSCORE", "+inf", "-inf", 1)[0]

    def bulk_ids(self, query: BulkFilter, *, after: int, upto: int, limit: int) -> list[int]:
        return self._bulk_walk(query, "ZRANGEBYSCORE", f"({after}", str(upto), limit)

    def _bulk_walk(
        self, query: BulkFilter, command: str, start: str, end: str, limit: int
    ) -> list[int]:
        """Up to `limit` ids `query` matches, walking its status's index from `start` towards
        `end` a chunk at a time (keyset), reading only the fields the filter needs."""
        index = f"{PREFIX}status:{query.status.value}"
        out: list[int] = []
        while len(out) < limit:
            ids = self._read_one(command, index, start, end, "LIMIT", "0", str(READ_CHUNK))
            fields = self._read(
                [
                    ("HMGET", f"{PREFIX}job:{i}", "queue", "type", "created_at", "status")
                    for i in ids
                ]
            )
            out += [int(i) for i, f in zip(ids, fields, strict=True) if _bulk_match(f, query)]
            if len(ids) < READ_CHUNK:
                break
            start = f"({ids[-1]}"
        return out[:limit]

    def prune(
        self,
        *,
        older_than: timedelta,
        now: datetime | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> int:
        before = (to_us(now) if now is not None else self._server_us()) - _us(older_than)
        total = 0
        for step in prune_batches(status, limit):  # one script per batch
            step.deleted(int(self._ops().run("prune", [step.status.value, before, step.size])))
            total += step.count
        return total

    # -- leadership ----------------------------------------------------------------------
    def try_lead(
        self, role: str, holder: str, *, ttl: timedelta, now: datetime | None = None
    ) -> bool:
        return bool(self._ops().run("lead", [role, holder, _us(ttl)], now))

    def resign(self, role: str, holder: str) -> None:
        self._ops().run("resign", [role, holder])

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for field, n in self._read_one("HGETALL", PREFIX + "counts").items():
            if int(n) > 0:
                queue, status = field.rsplit("\t", 1)
                out.setdefault(queue, {})[status] = int(n)
        return out

    # -- fleet observability (SPEC §9) -----------------------------------------------------
    def register_worker(
        self, worker: WorkerInfo, *, lease: timedelta, now: datetime | None = None
    ) -> None:
        at = to_us(now) if now is not None else self._server_us()
        pipe = self._redis().pipeline(transaction=True)  # MULTI: the row and its deadline
        pipe.hset(f"{PREFIX}workers", worker.id, rows.worker_json(worker))
        pipe.hsetnx(f"{PREFIX}worker_started", worker.id, to_us(worker.started_at))
        pipe.hset(f"{PREFIX}worker_beat", worker.id, at)
        pipe.zadd(f"{PREFIX}worker_expiry", {worker.id: at + _us(lease * LIVE_LEASES)})
        self._execute(pipe)

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self._redis().pipeline(transaction=True)
        for name in ("workers", "worker_started", "worker_beat"):
            pipe.hdel(PREFIX + name, worker_id)
        pipe.zrem(f"{PREFIX}worker_expiry", worker_id)
        self._execute(pipe)

    @staticmethod
    def _execute(pipe: Any) -> None:
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unavailable(exc) from exc

    def list_workers(self, *, now: datetime | None = None) -> list[WorkerInfo]:
        at = to_us(now) if now is not None else self._server_us()
        ids = sorted(self._read_one("ZRANGEBYSCORE", f"{PREFIX}worker_expiry", f"({at}", "+inf"))
        if not ids:
            return []
        texts, started, beats = self._read(
            [
                ("HMGET", PREFIX + name, *ids)
                for name in ("workers", "worker_started", "worker_beat")
            ]
        )
        return [
            rows.worker(text, start, beat)
            for text, start, beat in zip(texts, started, beats, strict=True)
            if text is not None
        ]

    def minute_stats(self, since: datetime) -> list[MinuteStats]:
        first = to_us(since) // 60_000_000
        minutes = self._read_one("ZRANGEBYSCORE", f"{PREFIX}minutes", str(first), "+inf")
        hashes = self._read([("HGETALL", f"{PREFIX}minute:{m}") for m in minutes])
        return [
            row for m, h in zip(minutes, hashes, strict=True) for row in rows.minutes(int(m), h)
        ]

    def oldest_pending(self, *, now: datetime | None = None) -> dict[str, datetime]:
        at = to_us(now) if now is not None else self._server_us()
        names = sorted(self._read_one("SMEMBERS", f"{PREFIX}queues"))
        firsts = self._read(
            [("ZRANGE", f"{PREFIX}pending:{q}", "0", "0", "WITHSCORES") for q in names]
        )
        return {
            name: from_us(int(float(first[0][1])))
            for name, first in zip(names, firsts, strict=True)
            if first and float(first[0][1]) <= at
        }

    def compact_stats(self, *, keep: timedelta, now: datetime | None = None) -> int:
        at = to_us(now) if now is not None else self._server_us()
        return int(self._ops().run("compact", [(at - _us(keep)) // 60_000_000]))

    # -- queue settings (SPEC §7): enforced by the claim -------------------------------------
    def list_queues(self) -> list[QueueSettings]:
        names = sorted(self._read_one("SMEMBERS", f"{PREFIX}queues"))
        hashes = self._read([("HGETALL", f"{PREFIX}settings:{name}") for name in names])
        counts, now = self.stats(), self._server_us()
        return [
            rows.queue(name, h, now)
            for name, h in zip(names, hashes, strict=True)
            if h.get("configured") or counts.get(name, {}).keys() & {"pending", "processing"}
        ]

    def configure_queue(self, name: str, **changes: Unpack[QueueChanges]) -> QueueSettings:
        fields: list[object] = []
        for key, value in changes.items():
            if key == "rate_limit":
                rate = cast(RateLimit | None, value)
                fields += ["rate_count", "" if rate is None else rate.count]
                fields += ["rate_period", "" if rate is None else rate.period]
            elif key == "fair":
                fields += [key, "1" if value else "0"]
            else:
                fields += [key, "" if value is None else value]
        return self._queue(name, "configure", fields)

    def pause_queue(self, name: str) -> QueueSettings:
        return self._queue(name, "pause")

    def resume_queue(self, name: str) -> QueueSettings:
        return self._queue(name, "resume")

    def hold_queue(self, name: str, until: datetime) -> QueueSettings:
        return self._queue(name, "hold", [to_us(until)])

    def _queue(self, name: str, change: str, args: Sequence[object] = ()) -> QueueSettings:
        now, flat = self._ops().run("queue", [name, change, *args])
        return rows.queue(name, dict(zip(flat[::2], flat[1::2], strict=True)), int(now))

    # -- periodic jobs (SPEC §7) -------------------------------------------------------------
    def register_periodic(
        self, periodic: Sequence[Periodic], *, now: datetime | None = None
    ) -> list[PeriodicState]:
        args: list[object] = []
        for p in periodic:
            args += [p.name, p.schedule.expression, p.schedule.timezone]
        if args:
            self._ops().run("register_periodic", args, now)
        names = {p.name for p in periodic}
        return [state for state in self.list_periodic() if state.name in names]

    def enqueue_periodic(
        self, periodic: Periodic, tick: datetime, *, now: datetime | None = None
    ) -> EnqueueResult | None:
        schedule = periodic.schedule
        head = [periodic.name, schedule.expression, schedule.timezone, to_us(tick)]
        reply = self._ops().run_again_safe(
            "enqueue_periodic", [*head, *plain_args([periodic.job_for(tick)])], now
        )
        if reply[0] == NO_JOB:
            return None
        return EnqueueResult(cast(Job, self.get_job(reply[1])), bool(reply[0]))

    def list_periodic(self) -> list[PeriodicState]:
        names = sorted(self._read_one("SMEMBERS", f"{PREFIX}periodics"))
        hashes = self._read([("HGETALL", f"{PREFIX}periodic:{name}") for name in names])
        statuses = self._read(
            [("HGET", f"{PREFIX}job:{h.get('last_job_id') or 0}", "status") for h in hashes]
        )
        return [rows.periodic(h, status) for h, status in zip(hashes, statuses, strict=True)]


def claim_args(
    worker: str, queues: Sequence[str] | None, limit: int, lease: timedelta
) -> list[object]:
    """The claim's part of the arguments of `claim` and `finish_and_claim` (claim.lua)."""
    return [worker, limit, _us(lease), *(queues or ())]


def claimed(hashes: Sequence[Sequence[str]]) -> list[Job]:
    """The claimed jobs, from the hashes the script returned with them."""
    return [rows.job_of(flat) for flat in hashes]


def finish_args(finishes: Sequence[Finish]) -> list[object]:
    args: list[object] = []
    for f in finishes:
        retry_at = "" if f.retry_at is None else to_us(f.retry_at)
        ref = f.ref
        args += [
            f.kind.value,
            ref.job_id,
            ref.worker,
            ref.attempt,
            f.result_json,
            f.error or "",
            retry_at,
        ]
    return args


def outcomes(pairs: Sequence[Sequence[Any]]) -> dict[int, JobStatus]:
    return {int(job_id): STATUSES[status] for job_id, status in pairs}


def _index(status: JobStatus | None, queue: str | None, type: str | None) -> str:
    """The index a listing walks: the first filter given, else every job."""
    if status is not None:
        return f"{PREFIX}status:{status.value}"
    if queue is not None:
        return f"{PREFIX}queue:{queue}"
    if type is not None:
        return f"{PREFIX}type:{type}"
    return f"{PREFIX}all"


def _matches(job: Job, query: JobFilter) -> bool:
    return (
        (query.status is None or job.status == query.status)
        and (query.queue is None or job.queue == query.queue)
        and (query.type is None or job.type == query.type)
    )


def _bulk_match(fields: Sequence[str | None], query: BulkFilter) -> bool:
    queue, type, created_at, status = fields
    if status != query.status.value:
        return False
    if query.queue is not None and queue != query.queue:
        return False
    if query.type is not None and type != query.type:
        return False
    before = query.created_before
    return before is None or created_at is None or int(created_at) < to_us(before)

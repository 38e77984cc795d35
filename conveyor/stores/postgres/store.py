"""PostgresStore: the scale-out store. Claims with FOR UPDATE SKIP LOCKED, wakes listeners
with NOTIFY in the enqueueing transaction, and keeps two small bounded connection pools."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar, Unpack, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row, tuple_row

from conveyor import dependencies, jsontext
from conveyor.errors import ConfigurationError, StoreUnavailable
from conveyor.fleet import LIVE_LEASES, MinuteStats, WorkerInfo
from conveyor.jobs import (
    POLICIES,
    QUEUE_SETTINGS,
    STATUSES,
    BulkFilter,
    EnqueueResult,
    Finish,
    FinishKind,
    Job,
    JobFilter,
    JobStatus,
    JSONValue,
    LeaseRef,
    NewJob,
    QueueChanges,
    QueueSettings,
    RateLimit,
    RecoveryResult,
    Renewal,
    decode_payloads,
    utcnow,
)
from conveyor.payloads import decode
from conveyor.periodic import Periodic, PeriodicState
from conveyor.stores import sqlfile
from conveyor.stores.base import (
    FinishListener,
    Notifier,
    Store,
    id_batches,
    prune_batches,
    refusal,
)
from conveyor.stores.postgres.connections import Connections, Cursor, first_line, split_pooler

Q = sqlfile.load("conveyor.stores.postgres")
MIGRATIONS = sqlfile.migrations("conveyor.stores.postgres")

# Short on purpose: an unreachable database must turn into a clear error within seconds,
# for the CLI as for a worker (which backs off and tries again).
CONNECT_TIMEOUT_S = 5
# How long a call waits for a pooled connection (while the pool reconnects, or when all
# are busy) before it reports the store unavailable.
POOL_TIMEOUT_S = 5.0
# Per pool (a process has two, see PostgresStore). A worker makes at most four store calls
# at a time (worker/storecalls.py), so four connections serve it without waiting; more would
# only load the database.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
# Server settings of the runtime pool's sessions (why: PostgresStore).
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off"
# Through a transaction-mode pooler: what is left of them, set per statement (no statement is
# prepared there, so there are no generic plans to choose).
POOLED_RUNTIME_SETTINGS = ("enable_seqscan = off", "jit = off")
PRUNE_BATCH = 5000
# Claims follow a queue's new settings (a pause, a limit) within this long (SPEC §7: a second).
RULES_TTL_S = 1.0
# A lost peer (no FIN: host died, network cut) is noticed by TCP keepalive in about a minute
# instead of the kernel's two hours.
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _ts(value: datetime | None) -> datetime | None:
    """A parameter timestamp: aware datetimes only (a naive one would be read in the
    session's time zone, silently shifting it)."""
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: Conveyor times carry a timezone")
    return value


def row_to_job(row: Mapping[str, Any]) -> Job:
    """The one place a database row becomes a Job (jsonb columns arrive decoded)."""
    return Job(
        id=row["id"],
        type=row["type"],
        queue=row["queue"],
        payload=row["payload"],
        priority=row["priority"],
        status=STATUSES[row["status"]],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        # a job waiting for dependencies shows the run_at it asked for, not the held one
        run_at=_utc(row["held_run_at"] or row["run_at"]),
        unique_key=row["unique_key"],
        result=row["result"],
        last_error=row["last_error"],
        worker=row["worker"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        started_at=_utc_or_none(row["started_at"]),
        finished_at=_utc_or_none(row["finished_at"]),
        progress=row["progress"],
        progress_message=row["progress_message"],
        concurrency_key=row["concurrency_key"],
        depends_on=tuple(row["depends_on"] or ()),
        on_dependency_failure=POLICIES[row["on_dependency_failure"]],
        trace_context=row["trace_context"],
    )


def row_to_queue(row: Mapping[str, Any], now: datetime) -> QueueSettings:
    """A `queues` row as QueueSettings; a backoff (paused_until) that has passed is None."""
    count, period = row["rate_limit"], row["rate_period"]
    paused_until = row["paused_until"]
    return QueueSettings(
        name=row["name"],
        concurrency=row["concurrency"],
        rate_limit=None if count is None else RateLimit(count, int(period.total_seconds())),
        key_concurrency=row["key_concurrency"],
        fair=row["fair"],
        paused=row["paused"],
        paused_until=_utc(paused_until) if paused_until and paused_until > now else None,
    )


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def parse_url(url: str) -> tuple[dict[str, Any], str]:
    """(libpq parameters with Conveyor's defaults, "host:port/db" for messages);
    ConfigurationError when libpq cannot parse the URL."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        # libpq may quote the URL back: hide its password there too.
        reason = redact(first_line(exc))
        raise ConfigurationError(
            f"malformed PostgreSQL URL {redact(url)!r}: {reason}"
            " (use postgresql://user:password@host:port/dbname)"
        ) from None
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    where = f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"
    # The URL wins: only fill in what it does not say.
    defaults: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVES}
    return {**defaults, **params}, where


class PostgresStore(Store):
    """Many processes on many machines share one database. Each process keeps two small
    bounded pools, each opened on first use, plus, in workers, one LISTEN connection (the
    notifier):

    - the runtime's pool runs what workers run thousands of times a second (claim from all
      queues, outcomes, heartbeat, release, recovery). Its sessions use generic plans only
      (`plan_cache_mode = force_generic_plan`): these statements have one good plan whatever
      their parameters, and PostgreSQL's default would plan each call afresh once the
      table has statistics (a large share of a claim's cost), because a generic plan whose LIMIT
      is a parameter is priced as if it returned a tenth of the table. A generic plan is
      kept until the table's statistics change, and one made while the table was empty
      would scan it; every runtime statement reaches its rows through an index, so these
      sessions also rule out sequential scans (`enable_seqscan = off`). A scan ruled out
      is priced at 10^10, not removed (a tiny table without an index, such as `workers`,
      is still scanned), and a plan that expensive is JIT-compiled: most of a second of
      server CPU per call, for a statement that runs in a millisecond. So JIT is off there.
      tests/postgres/test_plans.py fixes each of those generic plans.
    - the client pool runs everything else (enqueue, reads, operators' commands, claims
      from named queues), planned per call as usual: there the best plan depends on the
      parameters (which filters are given, how common the named queues are).

    Through a transaction-mode pooler (`?pooler=transaction` in the URL, or `listen_url`
    given) consecutive transactions may run on different server sessions, so none is relied
    on: no startup options, no prepared statements, every statement planned with its
    values; the runtime's statements run each after `SET LOCAL enable_seqscan = off` (and
    `jit = off`), in
    the same message (connections.LocalSettingsCursor). LISTEN needs a session of its own:
    the notifier and the finish listener connect to `listen_url` (a direct or session-mode
    connection) when given; without it workers poll (`listens` is False).
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = POOL_MIN_SIZE,
        max_size: int = POOL_MAX_SIZE,
        pool_timeout: float = POOL_TIMEOUT_S,
        listen_url: str | None = None,
    ) -> None:
        self.url = url
        plain_url, declared = split_pooler(url)
        self.pooled = declared or listen_url is not None
        self._params, self._where = parse_url(plain_url)
        self._listen: tuple[dict[str, Any], str] | None = None
        if listen_url is not None:
            if split_pooler(listen_url)[1]:
                raise ConfigurationError(
                    "LISTEN_DATABASE_URL must reach PostgreSQL directly (or through a "
                    "session-mode pooler): a LISTEN through a transaction-mode pooler hears nothing"
                )
            self._listen = parse_url(listen_url)
        self._client = self._connections("conveyor", "", min_size, max_size, pool_timeout)
        self._runtime = self._connections(
            "conveyor-runtime",
            "" if self.pooled else GENERIC_PLANS,
            min_size,
            max_size,
            pool_timeout,
            local_settings=POOLED_RUNTIME_SETTINGS if self.pooled else (),
        )
        self._rules: tuple[tuple[bool, list[str]] | None, float] = (None, 0.0)

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    # -- connections ---------------------------------------------------------------
    @property
    def listens(self) -> bool:
        """Whether idle workers are woken by notifications: False through a transaction-mode
        pooler without a listen_url, where workers poll."""
        return self._listen is not None or not self.pooled

    def conninfo(self, application_name: str, *, options: str = "", listen: bool = False) -> str:
        """The connection string for a new connection (`listen`: for LISTEN, to listen_url
        when given); `application_name` names it in pg_stat_activity unless the URL names
        it; `options` (server settings, `-c name=value`) go after any the URL gives."""
        params = {"application_name": application_name, **self._listen_params(listen)[0]}
        if options:
            params["options"] = f"{params.get('options') or ''} {options}".strip()
        return make_conninfo("", **params)

    def _listen_params(self, listen: bool) -> tuple[dict[str, Any], str]:
        if listen and self._listen is not None:
            return self._listen
        return self._params, self._where

    def _connections(
        self,
        name: str,
        options: str,
        min_size: int,
        max_size: int,
        timeout: float,
        *,
        local_settings: Sequence[str] = (),
    ) -> Connections:
        return Connections(
            self.conninfo(name, options=options),
            where=self._where,
            name=name,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            connect_timeout=CONNECT_TIMEOUT_S,
            pooled=self.pooled,
            local_settings=local_settings,
        )

    def _run(self, work: Callable[[Cursor], T], *, atomic: bool = False) -> T:
        return self._client.run(work, atomic=atomic)

    def _run_runtime(self, work: Callable[[Cursor], T], *, atomic: bool = False) -> T:
        return self._runtime.run(work, atomic=atomic)

    def _run_call(self, query: str, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """A runtime statement of migration 0016 through a pooler: a call of its function,
        which brings its settings and its plan (see the migration)."""
        return self._runtime.run(lambda cur: cur.execute(query, params).fetchall(), settings=False)

    def _queue_rules(self) -> tuple[bool, list[str]]:
        """Whether any queue has settings that change claims, and which queues have limits
        (their claims take a lock); read again when older than RULES_TTL_S."""
        rules, read_at = self._rules
        now = time.monotonic()
        if rules is None or now - read_at > RULES_TTL_S:
            rows = self._run_runtime(lambda cur: cur.execute(Q["queue_rules"]).fetchall())
            rules = (bool(rows), sorted(row["name"] for row in rows if row["limited"]))
            self._rules = (rules, now)
        return rules

    def _claim_rows(
        self,
        worker: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: timedelta,
        now: datetime | None,
        finishes: Sequence[Finish] = (),
    ) -> list[dict[str, Any]]:
        """Claim (writing `finishes` in the same statement): the one statement of the fast
        path while no queue has settings; otherwise, in one transaction, the locks of the
        limited queues it may claim from, then the claim within every queue's settings
        (queries.sql: next_due_restricted)."""
        params = _claim_params(worker, queues, limit, lease, now)
        restricted, limited = self._queue_rules()
        if finishes:
            params.update(_outcomes(finishes), wake=[])
        if not restricted:
            name = "finish_and_claim" if finishes else "claim"
            if self.pooled and not queues:
                return self._run_call(Q["call_" + name], params)
            query = Q[name + "_from_queues" if queues else name]
            run = self._run if queues else self._run_runtime
            return run(lambda cur: cur.execute(query, params).fetchall())
        locked = [q for q in limited if not queues or q in queues]
        params.update(queues=list(queues) if queues else None, locked=locked)
        query = Q["finish_and_claim_restricted" if finishes else "claim_restricted"]

        def work(cur: Cursor) -> list[dict[str, Any]]:
            held: list[str] = []
            if locked:
                rows = cur.execute(Q["lock_limited_queues"], {"locked": locked}).fetchall()
                held = [row["name"] for row in rows]
            # a slot freed in a limited queue this claim cannot count: wake the fleet
            params.update(locked=held, wake=[q for q in limited if q not in held])
            return cur.execute(query, params).fetchall()

        return self._run_runtime(work, atomic=bool(locked))

    def close(self) -> None:
        self._runtime.close()
        self._client.close()

    def notifier(self) -> Notifier:
        from conveyor.stores.postgres.notifier import PollingNotifier, PostgresNotifier

        if not self.listens:
            return PollingNotifier()
        where = self._listen_params(listen=True)[1]
        return PostgresNotifier(self.conninfo("conveyor-listener", listen=True), where=where)

    def finish_listener(self) -> FinishListener:
        from conveyor.stores.postgres.finish_listener import (
            PollingFinishListener,
            PostgresFinishListener,
        )

        if not self.listens:
            return PollingFinishListener()
        where = self._listen_params(listen=True)[1]
        return PostgresFinishListener(self.conninfo("conveyor-waiter", listen=True), where=where)

    # -- lifecycle -------------------------------------------------------------------
    def schema_version(self) -> int:
        def work(cur: Cursor) -> int:
            try:
                row = cur.execute(Q["schema_version"]).fetchone()
            except pg_errors.UndefinedTable:
                return 0
            return int(row["version"]) if row else 0

        return self._run(work)

    @property
    def latest_version(self) -> int:
        return MIGRATIONS[-1][0] if MIGRATIONS else 0

    def migrate(self) -> int:
        def work(cur: Cursor) -> int:
            # The lock comes first: two processes migrating at once queue here, and the
            # second then finds everything applied.
            cur.execute(Q["lock_migrations"])
            cur.execute(Q["create_schema_version"])
            row = cur.execute(Q["schema_version"]).fetchone()
            current = int(row["version"]) if row else 0
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                cur.execute(sql)  # no parameters: runs as a multi-statement script
                cur.execute(Q["record_migration"], {"version": version, "name": name})
            return max(current, MIGRATIONS[-1][0] if MIGRATIONS else 0)

        return self._run(work, atomic=True)

    def ping(self) -> None:
        self._run(lambda cur: cur.execute(Q["ping"]).fetchone())

    # -- producers -----------------------------------------------------------------------
    def enqueue(self, job: NewJob, *, connection: object | None = None) -> EnqueueResult:
        if connection is None:
            statement = Q["call_enqueue" if self.pooled else "enqueue"]
            return self._run(
                lambda cur: _insert(cur, job, statement=statement), atomic=bool(job.depends_on)
            )
        if not isinstance(connection, psycopg.Connection):
            raise TypeError(
                "connection must be a psycopg (3) Connection for a PostgreSQL store, "
                f"not {type(connection).__name__}"
            )
        # The caller's transaction: no commit here, and psycopg errors reach the caller as
        # they are (their transaction, their error handling). NOTIFY fires on their commit.
        with connection.cursor(row_factory=dict_row) as cur:
            return _insert(cur, job)

    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        if not jobs:
            return []
        return self._run(lambda cur: _insert_many(cur, jobs), atomic=True)

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
        if limit <= 0:
            return []
        return _claimed(self._claim_rows(worker, queues, limit, lease, now))

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
        if not finishes:
            return {}, self.claim(worker=worker, queues=queues, limit=limit, lease=lease, now=now)
        if limit <= 0:
            return self.finish_many(finishes, now=now), []
        # One statement, so one round trip and one commit (one WAL flush) for a batch of
        # outcomes and the next batch of jobs: what a busy worker waits on.
        rows = self._claim_rows(worker, queues, limit, lease, now, finishes)
        finished = cast(list[list[Any]], jsontext.loads(rows[0]["finished"]))
        applied = {job_id: JobStatus(status) for job_id, status in finished}
        return applied, _claimed([row for row in rows if row["id"] is not None])

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
        params = {**_fences(refs), "lease": lease, "now": _ts(now)}
        if self.pooled:
            rows = self._run_call(Q["call_heartbeat"], params)
        else:
            rows = self._run_runtime(lambda cur: cur.execute(Q["heartbeat"], params).fetchall())
        reports = [ref for ref in refs if progress and ref.job_id in progress]
        if reports:
            assert progress is not None
            report = {
                **_fences(reports),
                "progress": [progress[ref.job_id][0] for ref in reports],
                "messages": [progress[ref.job_id][1] for ref in reports],
            }
            self._run_runtime(lambda cur: cur.execute(Q["report_progress"], report))
        return Renewal(
            lost={ref.job_id for ref in refs} - {row["id"] for row in rows},
            stop={row["id"] for row in rows if row["status"] != JobStatus.PROCESSING},
        )

    def finish_many(
        self, finishes: Sequence[Finish], *, now: datetime | None = None
    ) -> dict[int, JobStatus]:
        if not finishes:
            return {}
        # nothing here claims the slots it frees in limited queues: wake the fleet to them
        wake = self._queue_rules()[1]
        params = {**_outcomes(finishes), "now": _ts(now), "wake": list(wake)}
        if self.pooled:
            return _applied(self._run_call(Q["call_finish_many"], params))
        return _applied(
            self._run_runtime(lambda cur: cur.execute(Q["finish_many"], params).fetchall())
        )

    def release(
        self,
        refs: Sequence[LeaseRef],
        *,
        now: datetime | None = None,
        not_before: datetime | None = None,
    ) -> set[int]:
        if not refs:
            return set()
        params = {**_fences(refs), "now": _ts(now), "not_before": _ts(not_before)}
        rows = self._run_runtime(lambda cur: cur.execute(Q["release"], params).fetchall())
        return {row["id"] for row in rows if row["was_processing"]}

    def recover_expired(self, *, limit: int = 1000, now: datetime | None = None) -> RecoveryResult:
        params = {"now": _ts(now), "limit": limit}
        rows = self._run_runtime(lambda cur: cur.execute(Q["recover_expired"], params).fetchall())
        result = RecoveryResult()
        for row in rows:
            (result.requeued if row["status"] == "pending" else result.failed).append(row["id"])
        return result

    # -- operators -------------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job | None:
        row = self._run(lambda cur: cur.execute(Q["get_job"], {"id": job_id}).fetchone())
        return None if row is None else row_to_job(row)

    def dependency_jobs(self, job_id: int) -> list[Job]:
        params = {"id": job_id}
        rows = self._run(lambda cur: cur.execute(Q["dependency_jobs"], params).fetchall())
        return [row_to_job(row) for row in rows]

    def dependents(self, job_id: int, *, limit: int = 100) -> list[Job]:
        params = {"id": job_id, "limit": limit}
        rows = self._run(lambda cur: cur.execute(Q["dependents"], params).fetchall())
        return [row_to_job(row) for row in rows]

    def starts(self, job_id: int) -> list[datetime] | None:
        params = {"id": job_id}
        row = self._run(lambda cur: cur.execute(Q["job_starts"], params).fetchone())
        if row is None:
            return None
        last = [row["started_at"]] if row["started_at"] is not None else []
        return [*(row["earlier_starts"] or ()), *last]

    def finished_among(self, job_ids: Sequence[int]) -> dict[int, Job | None]:
        params = {"ids": list(job_ids)}
        rows = self._run(lambda cur: cur.execute(Q["finished_among"], params).fetchall())
        return {row["wanted"]: None if row["id"] is None else row_to_job(row) for row in rows}

    def list_jobs(self, query: JobFilter) -> list[Job]:
        params = {
            "status": None if query.status is None else query.status.value,
            "type": query.type,
            "queue": query.queue,
            "before_id": query.before_id,
            "limit": query.limit,
        }
        rows = self._run(lambda cur: cur.execute(Q["list_jobs"], params).fetchall())
        return [row_to_job(row) for row in rows]

    def cancel(self, job_id: int, *, now: datetime | None = None) -> Job:
        def work(cur: Cursor) -> Job:
            if not _cancel_ids(cur, [job_id], now):
                _explain_refusal(cur, job_id, "cancel")
            return _read_job(cur, job_id)

        return self._run(work, atomic=True)

    def retry(self, job_id: int, *, now: datetime | None = None) -> Job:
        def work(cur: Cursor) -> Job:
            try:
                retried = _retry_ids(cur, [job_id], now)
            except _KeyTaken:
                retried = []  # an enqueue of its key committed meanwhile
            if not retried:
                _explain_refusal(cur, job_id, "retry")
            return _read_job(cur, job_id)

        return self._run(work, atomic=True)

    def cancel_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        cancelled: list[int] = []
        for batch in id_batches(ids):

            def work(cur: Cursor, batch: list[int] = batch) -> list[int]:
                return _cancel_ids(cur, batch, now, status)

            cancelled += self._run(work, atomic=True)  # one short transaction per batch
        return cancelled

    def retry_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        retried: list[int] = []
        for batch in id_batches(ids):

            def work(cur: Cursor, batch: list[int] = batch) -> list[int]:
                return _retry_ids(cur, batch, now, status)

            for _ in range(3):
                try:
                    retried += self._run(work, atomic=True)
                    break
                except _KeyTaken:
                    continue  # rolled back; run again, the batch now sees the key taken
            else:
                raise StoreUnavailable("unique keys are changing hands too fast to retry jobs")
        return retried

    def bulk_bounds(self, query: BulkFilter) -> tuple[int, int] | None:
        params = _bulk_params(query)
        # never prepared: planned with the values (the status's partial index; see queries.sql)
        row = self._run(lambda cur: cur.execute(Q["bulk_bounds"], params, prepare=False).fetchone())
        return None if row is None or row["low"] is None else (row["low"], row["high"])

    def bulk_ids(self, query: BulkFilter, *, after: int, upto: int, limit: int) -> list[int]:
        params = {**_bulk_params(query), "after": after, "upto": upto, "limit": limit}
        rows = self._run(lambda cur: cur.execute(Q["bulk_ids"], params, prepare=False).fetchall())
        return [row["id"] for row in rows]

    def prune(
        self,
        *,
        older_than: timedelta,
        now: datetime | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> int:
        total = 0
        for batch in prune_batches(status, limit, PRUNE_BATCH):
            params = {
                "status": batch.status.value,
                "older_than": older_than,
                "now": _ts(now),
                "batch": batch.size,
            }

            def work(cur: Cursor, params: Mapping[str, object] = params) -> int:
                return cur.execute(Q["prune"], params).rowcount

            # One transaction per batch: locks stay short while workers keep running.
            deleted = self._run(work)
            total += deleted
            batch.deleted(deleted)
        return total

    # -- leadership ------------------------------------------------------------------------
    def try_lead(
        self, role: str, holder: str, *, ttl: timedelta, now: datetime | None = None
    ) -> bool:
        params = {"role": role, "holder": holder, "ttl": ttl, "now": _ts(now)}
        return self._run(lambda cur: cur.execute(Q["try_lead"], params).fetchone()) is not None

    def resign(self, role: str, holder: str) -> None:
        self._run(lambda cur: cur.execute(Q["resign"], {"role": role, "holder": holder}))

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for row in self._run(lambda cur: cur.execute(Q["stats"]).fetchall()):
            out.setdefault(row["queue"], {})[row["status"]] = row["n"]
        return out

    # -- fleet observability (SPEC §9) -----------------------------------------------------
    def register_worker(
        self, worker: WorkerInfo, *, lease: timedelta, now: datetime | None = None
    ) -> None:
        params = {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "queues": None if worker.queues is None else list(worker.queues),
            "slots": worker.slots,
            "busy": worker.busy,
            "version": worker.version,
            "started_at": _ts(worker.started_at),
            "now": _ts(now),
            "live": lease * LIVE_LEASES,
        }
        self._run_runtime(lambda cur: cur.execute(Q["register_worker"], params))

    def unregister_worker(self, worker_id: str) -> None:
        self._run_runtime(lambda cur: cur.execute(Q["unregister_worker"], {"id": worker_id}))

    def list_workers(self, *, now: datetime | None = None) -> list[WorkerInfo]:
        params = {"now": _ts(now)}
        rows = self._run(lambda cur: cur.execute(Q["list_workers"], params).fetchall())
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                queues=None if row["queues"] is None else tuple(row["queues"]),
                slots=row["slots"],
                busy=row["busy"],
                version=row["version"],
                started_at=_utc(row["started_at"]),
                last_heartbeat=_utc(row["last_heartbeat"]),
            )
            for row in rows
        ]

    def minute_stats(self, since: datetime) -> list[MinuteStats]:
        params = {"since": _ts(since)}
        rows = self._run(lambda cur: cur.execute(Q["minute_stats"], params).fetchall())
        return [
            MinuteStats(
                minute=_utc(row["minute"]),
                wait_bucket=row["wait_bucket"],
                run_bucket=row["run_bucket"],
                finished=row["finished"],
                failed=row["failed"],
                retried=row["retried"],
            )
            for row in rows
        ]

    def oldest_pending(self, *, now: datetime | None = None) -> dict[str, datetime]:
        params = {"now": _ts(now)}
        rows = self._run(lambda cur: cur.execute(Q["oldest_pending"], params).fetchall())
        return {row["queue"]: _utc(row["run_at"]) for row in rows}

    def compact_stats(self, *, keep: timedelta, now: datetime | None = None) -> int:
        params = {"now": _ts(now), "keep": keep}

        def work(cur: Cursor) -> int:
            deleted = cur.execute(Q["prune_minutes"], params).rowcount
            cur.execute(Q["fold_counts"])
            return deleted

        return self._run(work)

    # -- queue settings (SPEC §7) ----------------------------------------------------------
    def list_queues(self) -> list[QueueSettings]:
        rows = self._run(lambda cur: cur.execute(Q["list_queues"]).fetchall())
        now = utcnow()
        return sorted((row_to_queue(row, now) for row in rows), key=lambda q: q.name)

    def configure_queue(self, name: str, **changes: Unpack[QueueChanges]) -> QueueSettings:
        rate = changes.get("rate_limit")
        params = {
            "name": name,
            "concurrency": changes.get("concurrency"),
            "rate_limit": None if rate is None else rate.count,
            "rate_period": None if rate is None else rate.window,
            "key_concurrency": changes.get("key_concurrency"),
            "fair": changes.get("fair"),
            **{f"set_{key}": key in changes for key in QUEUE_SETTINGS},
        }
        return self._queue_write("configure_queue", params)

    def pause_queue(self, name: str) -> QueueSettings:
        return self._queue_write("pause_queue", {"name": name})

    def resume_queue(self, name: str) -> QueueSettings:
        return self._queue_write("resume_queue", {"name": name})

    def hold_queue(self, name: str, until: datetime) -> QueueSettings:
        return self._queue_write("hold_queue", {"name": name, "until": _ts(until)})

    def _queue_write(self, query: str, params: Mapping[str, object]) -> QueueSettings:
        """One upsert of a `queues` row (its statement NOTIFYs conveyor_jobs where a change
        may release jobs)."""
        row = self._run(lambda cur: cur.execute(Q[query], params).fetchone())
        assert row is not None, "an upsert returns its row"
        self._rules = (None, 0.0)  # this process's own claims see it at once
        return row_to_queue(row, utcnow())

    # -- periodic jobs ---------------------------------------------------------------------
    def register_periodic(
        self, periodic: Sequence[Periodic], *, now: datetime | None = None
    ) -> list[PeriodicState]:
        names = [p.name for p in periodic]
        params = {
            "names": names,
            "schedules": [p.schedule.expression for p in periodic],
            "timezones": [p.schedule.timezone for p in periodic],
            "now": _ts(now),
        }
        if periodic:
            self._run(lambda cur: cur.execute(Q["register_periodic"], params))
        return [state for state in self.list_periodic() if state.name in set(names)]

    def enqueue_periodic(
        self, periodic: Periodic, tick: datetime, *, now: datetime | None = None
    ) -> EnqueueResult | None:
        # `now` is the database's clock here (`since` and the CAS compare ticks only).
        job = periodic.job_for(tick)
        params = {
            "name": periodic.name,
            "schedule": periodic.schedule.expression,
            "timezone": periodic.schedule.timezone,
            "tick": _ts(tick),
            "type": job.type,
            "queue": job.queue,
            "payload": job.payload_json,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "unique_key": job.unique_key,
        }

        def work(cur: Cursor) -> EnqueueResult | None:
            # One statement: the compare-and-set and the job's insert commit together.
            row = cur.execute(Q["enqueue_periodic"], params).fetchone()
            if row is None:
                return None
            if row["id"] is not None:
                created_at = _utc(row["created_at"])
                inserted = job.as_inserted(
                    row["id"],
                    run_at=_utc(row["run_at"]),
                    at=created_at,
                    payload=decode(job.payload_json),
                )
                return EnqueueResult(inserted, created=True)
            # The tick is won, but an unfinished job held its unique_key (only an explicit
            # enqueue with that key can): that job stands for the tick, or, if it finished
            # meanwhile, an ordinary enqueue inserts the tick's job after all.
            result = _insert(cur, job)
            holder = {"name": periodic.name, "tick": params["tick"], "job_id": result.job.id}
            cur.execute(Q["periodic_holder"], holder)
            return result

        return self._run(work)

    def list_periodic(self) -> list[PeriodicState]:
        rows = self._run(lambda cur: cur.execute(Q["list_periodic"]).fetchall())
        return [
            PeriodicState(
                name=row["name"],
                schedule=row["schedule"],
                timezone=row["timezone"],
                since=_utc(row["since"]),
                last_tick=_utc_or_none(row["last_tick"]),
                last_job_id=row["last_job_id"],
                last_job_status=(
                    None if row["last_job_status"] is None else JobStatus(row["last_job_status"])
                ),
                updated_at=_utc(row["updated_at"]),
            )
            for row in rows
        ]


# -- statements shared by several methods ---------------------------------------------------
def _claim_params(
    worker: str,
    queues: Sequence[str] | None,
    limit: int,
    lease: timedelta,
    now: datetime | None,
) -> dict[str, object]:
    params: dict[str, object] = {"worker": worker, "now": _ts(now), "lease": lease, "limit": limit}
    if queues:
        params["queues"] = list(queues)
    return params


def _claimed(rows: Sequence[Mapping[str, Any]]) -> list[Job]:
    jobs = [row_to_job(row) for row in rows]
    # RETURNING order is unspecified; hand jobs out in claim order.
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs


def _applied(rows: Sequence[Mapping[str, Any]]) -> dict[int, JobStatus]:
    """finish_many's rows: the new status of each job whose outcome applied."""
    return {row["id"]: JobStatus(row["status"]) for row in rows if row["applies"]}


def _outcomes(finishes: Sequence[Finish]) -> dict[str, object]:
    """The outcomes parameters: JSON rows for the outcomes fragment, in id order (its lock
    order), and their ids. One outcome per job, the first, as sequential writes would
    apply: a second one for the same claim finds the job no longer processing."""
    first: dict[int, Finish] = {}
    for fin in finishes:
        first.setdefault(fin.ref.job_id, fin)
    batch = sorted(first.values(), key=lambda fin: fin.ref.job_id)
    rows = [
        [
            fin.ref.job_id,
            fin.ref.worker,
            fin.ref.attempt,
            fin.result_json if fin.kind == FinishKind.DONE else None,
            fin.error,
            _iso(fin.retry_at),
            fin.kind.value,
        ]
        for fin in batch
    ]
    return {"outcomes": jsontext.dumps(rows), "ids": [fin.ref.job_id for fin in batch]}


def _iso(value: datetime | None) -> str | None:
    checked = _ts(value)
    return None if checked is None else checked.isoformat()


def _insert(
    cur: Cursor,
    job: NewJob,
    depends_on: list[int] | None = None,
    *,
    statement: str = Q["enqueue"],
) -> EnqueueResult:
    """Insert one job, or find the unfinished job holding its unique_key. `depends_on`: the
    job's dependencies with its batch's "@i" resolved (its own depends_on by default);
    `statement`: enqueue, or its function's call (call_enqueue) through a pooler."""
    if depends_on is None:
        depends_on = list(job.depends_on)
    if depends_on:
        return _insert_dependent(cur, job, depends_on)
    params = {
        "type": job.type,
        "queue": job.queue,
        "payload": job.payload_json,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "run_at": _ts(job.run_at),
        "unique_key": job.unique_key,
        "concurrency_key": job.concurrency_key,
        "trace_context": job.trace_context,
    }
    # Unlike SQLite's single writer, the holder may finish between our insert and our read
    # (a committed DONE frees the key): then insert again.
    for _ in range(3):
        row = cur.execute(statement, params).fetchone()
        if row is not None:
            created_at = _utc(row["created_at"])
            run_at = created_at if job.run_at is None else _utc(row["run_at"])
            payload = decode(job.payload_json)
            inserted = job.as_inserted(row["id"], run_at=run_at, at=created_at, payload=payload)
            return EnqueueResult(inserted, created=True)
        holder = _holder(cur, job)
        if holder is not None:
            return EnqueueResult(holder, created=False)
    raise StoreUnavailable(f"unique_key {job.unique_key!r} is changing hands too fast to enqueue")


def _insert_dependent(cur: Cursor, job: NewJob, depends_on: list[int]) -> EnqueueResult:
    """Insert a job with dependencies (SPEC §8), in the caller's transaction."""
    found = {
        row["id"]: dependencies.Dependency(JobStatus(row["status"]), row["depth"])
        for row in cur.execute(Q["lock_dependencies"], {"ids": depends_on})
    }
    plan = dependencies.plan(tuple(depends_on), found, job.on_dependency_failure)
    for _ in range(3):
        if job.unique_key is not None:
            holder = _holder(cur, job)
            if holder is not None:
                return EnqueueResult(holder, created=False)
        row = cur.execute(
            Q["enqueue_dependent"],
            {
                "type": job.type,
                "queue": job.queue,
                "payload": job.payload_json,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "run_at": _ts(job.run_at),
                "held": dependencies.WAITING_RUN_AT,
                "unique_key": job.unique_key,
                "concurrency_key": job.concurrency_key,
                "depends_on": depends_on,
                "on_dependency_failure": job.on_dependency_failure.value,
                "waiting_for": len(plan.waiting_on),
                "depth": plan.depth,
                "status": plan.status.value,
                "last_error": plan.cancelled_by,
                "trace_context": job.trace_context,
            },
        ).fetchone()
        if row is not None:
            if plan.waiting_on:
                cur.execute(
                    Q["add_dependencies"], {"ids": list(plan.waiting_on), "job_id": row["id"]}
                )
            return EnqueueResult(row_to_job(row), created=True)
    raise StoreUnavailable(f"unique_key {job.unique_key!r} is changing hands too fast to enqueue")


def _insert_in_order(cur: Cursor, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
    """A batch with dependencies: one job at a time, each "@i" naming an inserted job."""
    results: list[EnqueueResult] = []
    for job in jobs:
        earlier = {results[i].job.id for i in job.depends_on_items}
        results.append(_insert(cur, job, sorted({*job.depends_on, *earlier})))
    return results


def _insert_many(cur: Cursor, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
    if any(job.has_dependencies for job in jobs):
        return _insert_in_order(cur, jobs)
    rows = jsontext.dumps(
        [
            [
                job.type,
                job.queue,
                job.payload_json,
                job.priority,
                job.max_attempts,
                _iso(job.run_at),
                job.unique_key,
                job.concurrency_key,
                job.trace_context,
            ]
            for job in jobs
        ]
    )
    keyed = any(job.unique_key is not None for job in jobs)
    query = Q["enqueue_many" if keyed else "enqueue_many_unkeyed"]
    # Plain tuples: a dict per row costs more than the rest of reading the batch back.
    with cur.connection.cursor(row_factory=tuple_row) as plain:
        returned = plain.execute(query, {"rows": rows}).fetchall()
    payloads = decode_payloads(jobs)
    if keyed:
        return _keyed_results(cur, jobs, payloads, returned)
    created_at = _utc(next(at for job_id, at in returned if job_id is None))
    ids = sorted(job_id for job_id, _ in returned if job_id is not None)
    return [
        EnqueueResult(
            job.as_inserted(
                job_id,
                run_at=created_at if job.run_at is None else _utc(job.run_at),
                at=created_at,
                payload=payload,
            ),
            created=True,
        )
        for job, payload, job_id in zip(jobs, payloads, ids, strict=True)
    ]


def _keyed_results(
    cur: Cursor, jobs: Sequence[NewJob], payloads: list[JSONValue], inserted: list[tuple[Any, ...]]
) -> list[EnqueueResult]:
    results: list[EnqueueResult] = []
    # One statement, one now(): most rows share their times, so convert each value once.
    utc: dict[datetime, datetime] = {}
    for job, payload, (job_id, run_at, created_at, _) in zip(jobs, payloads, inserted, strict=True):
        if job_id is not None:
            if run_at not in utc:
                utc[run_at] = _utc(run_at)
            if created_at not in utc:
                utc[created_at] = _utc(created_at)
            inserted_job = job.as_inserted(
                job_id, run_at=utc[run_at], at=utc[created_at], payload=payload
            )
            results.append(EnqueueResult(inserted_job, created=True))
            continue
        # Its key is held (by an older job, or by an earlier row of this batch): a second
        # round trip, only for batches that hit a key.
        holder = _holder(cur, job)
        results.append(
            EnqueueResult(holder, created=False) if holder is not None else _insert(cur, job)
        )
    return results


def _holder(cur: Cursor, job: NewJob) -> Job | None:
    row = cur.execute(Q["get_unfinished_by_unique_key"], {"unique_key": job.unique_key}).fetchone()
    return None if row is None else row_to_job(row)


def _fences(refs: Iterable[LeaseRef]) -> dict[str, object]:
    """LeaseRefs as the parallel arrays the batch statements unnest."""
    refs = list(refs)
    return {
        "ids": [ref.job_id for ref in refs],
        "workers": [ref.worker for ref in refs],
        "attempts": [ref.attempt for ref in refs],
    }


def _explain_refusal(cur: Cursor, job_id: int, action: str) -> NoReturn:
    row = cur.execute(Q["get_job"], {"id": job_id}).fetchone()
    status = None if row is None else JobStatus(row["status"])
    blocker = None
    if action == "retry" and row is not None:
        for blocked in cur.execute(Q["retry_blocked"], {"ids": [job_id]}).fetchall():
            blocker = (blocked["dependency"], blocked["status"])
            break
    raise refusal(job_id, status, action, blocker)


def _read_job(cur: Cursor, job_id: int) -> Job:
    row = cur.execute(Q["get_job"], {"id": job_id}).fetchone()
    assert row is not None, "the job changed in this transaction"
    return row_to_job(row)


class _KeyTaken(Exception):
    """A retry met a unique_key that an enqueue took while it ran (a unique violation): its
    transaction is rolled back, and running it again sees that job and skips the key."""


def _cancel_ids(
    cur: Cursor, ids: Sequence[int], now: datetime | None, status: JobStatus | None = None
) -> list[int]:
    """pending|processing → cancelled for `ids` (only those in `status`, when given), in the
    caller's transaction: the one cancel statement of `cancel`, `cancel_many` and bulk
    cancels. Runs holding a cancelled job and waiters on it are notified at commit. At most
    BULK_BATCH ids (one NOTIFY payload). Returns the ids cancelled, ascending."""
    params = {"ids": list(ids), "now": _ts(now), "status": _value(status)}
    return sorted(row["id"] for row in cur.execute(Q["cancel_many"], params).fetchall())


def _retry_ids(
    cur: Cursor, ids: Sequence[int], now: datetime | None, status: JobStatus | None = None
) -> list[int]:
    """failed|cancelled → pending for `ids` (only those in `status`, when given), in the
    caller's transaction: the one retry statement of `retry`, `retry_many` and bulk retries.
    A job whose unique_key an unfinished job holds is skipped; _KeyTaken when an enqueue
    took a key meanwhile (the transaction is then aborted). Returns the ids retried,
    ascending."""
    blocked = {row["id"] for row in cur.execute(Q["retry_blocked"], {"ids": list(ids)})}
    params = {
        "ids": [job_id for job_id in ids if job_id not in blocked],
        "now": _ts(now),
        "status": _value(status),
    }
    try:
        rows = cur.execute(Q["retry_many"], params).fetchall()
    except pg_errors.UniqueViolation:
        raise _KeyTaken from None
    retried = sorted(row["id"] for row in rows)
    if retried:  # those with dependencies wait again for the unfinished ones (SPEC §8)
        held = {"ids": retried, "held": dependencies.WAITING_RUN_AT}
        cur.execute(Q["wait_again"], held)
    return retried


def _bulk_params(query: BulkFilter) -> dict[str, object]:
    return {
        "status": query.status.value,
        "queue": query.queue,
        "type": query.type,
        "created_before": query.created_before,
    }


def _value(status: JobStatus | None) -> str | None:
    return None if status is None else status.value

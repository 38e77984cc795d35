"""PostgresStore: the scale-out store. Claims with FOR UPDATE SKIP LOCKED, wakes listeners
with NOTIFY in the enqueueing transaction, and keeps a small bounded connection pool."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from conveyor.errors import ConfigurationError, InvalidTransition, JobNotFound, StoreUnavailable
from conveyor.jobs import (
    EnqueueResult,
    Finish,
    Job,
    JobFilter,
    JobStatus,
    LeaseRef,
    NewJob,
    RecoveryResult,
)
from conveyor.stores import sqlfile
from conveyor.stores.base import Notifier, Store

Q = sqlfile.load("conveyor.stores.postgres")
MIGRATIONS = sqlfile.migrations("conveyor.stores.postgres")

# Short on purpose: an unreachable database must turn into a clear error within seconds,
# for the CLI as for a worker (which backs off and tries again).
CONNECT_TIMEOUT_S = 5
# How long a call waits for a pooled connection (while the pool reconnects, or when all
# are busy) before it reports the store unavailable.
POOL_TIMEOUT_S = 5.0
# A worker makes at most four store calls at a time (worker/storecalls.py), so four
# connections serve it without waiting; more would only load the database.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
PRUNE_BATCH = 5000
# A lost peer (no FIN: host died, network cut) is noticed by TCP keepalive in about a minute
# instead of the kernel's two hours.
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

T = TypeVar("T")
Cursor = psycopg.Cursor[DictRow]


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
        status=JobStatus(row["status"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=_utc(row["run_at"]),
        unique_key=row["unique_key"],
        result=row["result"],
        last_error=row["last_error"],
        worker=row["worker"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        started_at=_utc_or_none(row["started_at"]),
        finished_at=_utc_or_none(row["finished_at"]),
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
        reason = redact(_first_line(exc))
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


class PostgresStore(Store):
    """Many processes on many machines share one database. Each process keeps one bounded
    pool (opened on first use) plus, in workers, one LISTEN connection (the notifier)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = POOL_MIN_SIZE,
        max_size: int = POOL_MAX_SIZE,
        pool_timeout: float = POOL_TIMEOUT_S,
    ) -> None:
        self.url = url
        self._params, self._where = parse_url(url)
        self._min_size = min_size
        self._max_size = max_size
        self._pool_timeout = pool_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    # -- connections ---------------------------------------------------------------
    def conninfo(self, application_name: str) -> str:
        """The connection string for a new connection (also used by the notifier);
        `application_name` names it in pg_stat_activity unless the URL names it."""
        return make_conninfo("", **{"application_name": application_name, **self._params})

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL at {self._where}: {_first_line(exc)}")

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is not None:
                return self._pool
            if self._closed:
                raise StoreUnavailable("store is closed")
            # One direct attempt first: the pool retries failed connections in the
            # background and would only report a timeout, while this says at once why the
            # database cannot be reached (refused, bad password, no such database, starting
            # up). It also makes every call fail fast while the database is down.
            self._probe()
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self.conninfo("conveyor"),
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._pool_timeout,
                # Give up a background reconnect soon: a call that needs a connection then
                # starts a fresh attempt, rather than waiting out a long backoff after the
                # database is back.
                reconnect_timeout=CONNECT_TIMEOUT_S * 2,
                name="conveyor",
                kwargs={"autocommit": True},
                open=False,
            )
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
            except PoolTimeout as exc:
                pool.close()
                raise self._unavailable(exc) from None
            self._pool = pool
            return pool

    def _probe(self) -> None:
        try:
            psycopg.connect(self.conninfo("conveyor")).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _discard(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        """Drop a pool whose connections died (database restart): the next call probes
        and builds a new one. Connections other threads still hold close on return."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        # Closing waits for the pool's worker threads (maybe mid-connect): not on the
        # caller's time.
        threading.Thread(target=pool.close, name="conveyor-pool-close", daemon=True).start()

    def _run(self, work: Callable[[Cursor], T], *, atomic: bool = False) -> T:
        """Run `work` on a pooled connection. Connections are in autocommit: a single
        statement is its own transaction, one round trip with no BEGIN/COMMIT around it;
        `atomic=True` wraps `work` in one transaction for multi-statement work.

        A connection that died while idle in the pool (database restart, terminated
        backend) fails on first use; that transaction certainly did not commit, so the
        pool is replaced and `work` runs once more: at once when only the connections
        died, or failing fast with the reason while the database is down. A deadlock or
        serialization failure (rolled back by the server) is also run once more. A failure
        at commit is never repeated: it may have committed."""
        for attempt in (1, 2):
            pool = self._pool or self._open_pool()
            held: psycopg.Connection[Any] | None = None
            try:
                with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    held = conn
                    if atomic:
                        with conn.transaction():
                            result = work(cur)
                            held = None  # from here on (commit) a failure is not repeated
                    else:
                        result = work(cur)
                        held = None
                return result
            except PoolClosed as exc:
                # Another thread replaced the pool under us (or close() was called).
                if attempt == 2 or self._closed:
                    raise self._unavailable(exc) from None
            except PoolTimeout as exc:
                # Database down (the pool is still backing off) or every connection busy.
                try:
                    self._probe()
                except StoreUnavailable:
                    self._discard(pool)
                    raise
                raise self._unavailable(exc) from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == 2 or held is None:
                    raise self._unavailable(exc) from None
                if held.closed:
                    self._discard(pool)
                elif not isinstance(exc, pg_errors.TransactionRollback):
                    raise self._unavailable(exc) from None
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=CONNECT_TIMEOUT_S)

    def notifier(self) -> Notifier:
        from conveyor.stores.postgres.notifier import PostgresNotifier

        return PostgresNotifier(self.conninfo("conveyor-listener"), where=self._where)

    # -- lifecycle -------------------------------------------------------------------
    def schema_version(self) -> int:
        def work(cur: Cursor) -> int:
            try:
                row = cur.execute(Q["schema_version"]).fetchone()
            except pg_errors.UndefinedTable:
                return 0
            return int(row["version"]) if row else 0

        return self._run(work)

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
            return self._run(lambda cur: _insert(cur, job))
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
        return self._run(lambda cur: _claim(cur, worker, queues, limit, lease, now))

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
        params = {
            **_claim_params(worker, queues, limit, lease, now),
            **_outcomes(finishes),
        }
        query = Q["finish_and_claim_from_queues" if queues else "finish_and_claim"]
        rows = self._run(lambda cur: cur.execute(query, params).fetchall())
        applied = {job_id: JobStatus(status) for job_id, status in json.loads(rows[0]["finished"])}
        return applied, _claimed([row for row in rows if row["id"] is not None])

    def heartbeat(
        self, refs: Sequence[LeaseRef], *, lease: timedelta, now: datetime | None = None
    ) -> set[int]:
        if not refs:
            return set()
        params = {**_fences(refs), "lease": lease, "now": _ts(now)}
        rows = self._run(lambda cur: cur.execute(Q["heartbeat"], params).fetchall())
        return {ref.job_id for ref in refs} - {row["id"] for row in rows}

    def finish_many(
        self, finishes: Sequence[Finish], *, now: datetime | None = None
    ) -> dict[int, JobStatus]:
        if not finishes:
            return {}
        return self._run(lambda cur: _finish(cur, finishes, now))

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
        rows = self._run(lambda cur: cur.execute(Q["release"], params).fetchall())
        return {row["id"] for row in rows}

    def recover_expired(self, *, limit: int = 1000, now: datetime | None = None) -> RecoveryResult:
        params = {"now": _ts(now), "limit": limit}
        rows = self._run(lambda cur: cur.execute(Q["recover_expired"], params).fetchall())
        result = RecoveryResult()
        for row in rows:
            (result.requeued if row["status"] == "pending" else result.failed).append(row["id"])
        return result

    # -- operators -------------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job | None:
        row = self._run(lambda cur: cur.execute(Q["get_job"], {"id": job_id}).fetchone())
        return None if row is None else row_to_job(row)

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
            row = cur.execute(Q["cancel"], {"id": job_id, "now": _ts(now)}).fetchone()
            if row is None:
                _explain_refusal(cur, job_id, "cancel")
            return row_to_job(row)

        return self._run(work)

    def retry(self, job_id: int, *, now: datetime | None = None) -> Job:
        def work(cur: Cursor) -> Job:
            try:
                row = cur.execute(Q["retry"], {"id": job_id, "now": _ts(now)}).fetchone()
            except pg_errors.UniqueViolation:
                raise InvalidTransition(
                    f"job {job_id} cannot be retried: another unfinished job holds its unique_key"
                ) from None
            if row is None:
                _explain_refusal(cur, job_id, "retry")
            return row_to_job(row)

        return self._run(work)

    def prune(self, *, older_than: timedelta, now: datetime | None = None) -> int:
        params = {"older_than": older_than, "now": _ts(now), "batch": PRUNE_BATCH}
        total = 0
        while True:
            # One transaction per batch: locks stay short while workers keep running.
            deleted = self._run(lambda cur: cur.execute(Q["prune"], params).rowcount)
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for row in self._run(lambda cur: cur.execute(Q["stats"]).fetchall()):
            out.setdefault(row["queue"], {})[row["status"]] = row["n"]
        return out


# -- statements shared by several methods ---------------------------------------------------
def _claim(
    cur: Cursor,
    worker: str,
    queues: Sequence[str] | None,
    limit: int,
    lease: timedelta,
    now: datetime | None,
) -> list[Job]:
    query = Q["claim_from_queues" if queues else "claim"]
    return _claimed(cur.execute(query, _claim_params(worker, queues, limit, lease, now)).fetchall())


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


def _finish(cur: Cursor, finishes: Sequence[Finish], now: datetime | None) -> dict[int, JobStatus]:
    params = {**_outcomes(finishes), "now": _ts(now)}
    rows = cur.execute(Q["finish_many"], params).fetchall()
    return {row["id"]: JobStatus(row["status"]) for row in rows}


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
            fin.result_json if fin.error is None else None,
            fin.error,
            None if fin.error is None else _iso(fin.retry_at),
        ]
        for fin in batch
    ]
    return {"outcomes": json.dumps(rows), "ids": [fin.ref.job_id for fin in batch]}


def _iso(value: datetime | None) -> str | None:
    checked = _ts(value)
    return None if checked is None else checked.isoformat()


def _insert(cur: Cursor, job: NewJob) -> EnqueueResult:
    """Insert one job, or find the unfinished job holding its unique_key."""
    params = {
        "type": job.type,
        "queue": job.queue,
        "payload": job.payload_json,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "run_at": _ts(job.run_at),
        "unique_key": job.unique_key,
    }
    # Unlike SQLite's single writer, the holder may finish between our insert and our read
    # (a committed DONE frees the key): then insert again.
    for _ in range(3):
        row = cur.execute(Q["enqueue"], params).fetchone()
        if row is not None:
            return EnqueueResult(row_to_job(row), created=True)
        holder = _holder(cur, job)
        if holder is not None:
            return EnqueueResult(holder, created=False)
    raise StoreUnavailable(f"unique_key {job.unique_key!r} is changing hands too fast to enqueue")


def _insert_many(cur: Cursor, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
    rows = json.dumps(
        [
            [
                job.type,
                job.queue,
                job.payload_json,
                job.priority,
                job.max_attempts,
                _iso(job.run_at),
                job.unique_key,
            ]
            for job in jobs
        ]
    )
    inserted = cur.execute(Q["enqueue_many"], {"rows": rows}).fetchall()
    results: list[EnqueueResult] = []
    for job, row in zip(jobs, inserted, strict=True):
        if row["id"] is not None:
            results.append(
                EnqueueResult(
                    job.as_inserted(
                        row["id"], run_at=_utc(row["run_at"]), at=_utc(row["created_at"])
                    ),
                    created=True,
                )
            )
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
    if row is None:
        raise JobNotFound(f"job {job_id} not found")
    raise InvalidTransition(f"job {job_id} is {row['status']}: cannot {action} it")

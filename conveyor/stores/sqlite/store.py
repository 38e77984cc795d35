"""SqliteStore: the embedded store. WAL, one writer at a time via BEGIN IMMEDIATE."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Unpack, cast

from conveyor import dependencies, jsontext
from conveyor.errors import ConfigurationError
from conveyor.fleet import LIVE_LEASES, MinuteStats, WorkerInfo
from conveyor.jobs import (
    CANCELLABLE,
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
from conveyor.stores.sqlite import clock
from conveyor.stores.sqlite.connections import Connections

Q = sqlfile.load("conveyor.stores.sqlite")
MIGRATIONS = sqlfile.migrations("conveyor.stores.sqlite")

# A writer waits this long for the lock before giving up. Long on purpose: with WAL,
# BEGIN IMMEDIATE and short transactions, waiting is the right answer to contention,
# and "database is locked" must never reach a user (see docs/architecture.md).
BUSY_TIMEOUT_S = 60.0
# How old the store's answer to "has any queue settings?" may be (claim or claim_plain):
# workers see a new setting within about this long (SPEC §7: within a second).
RULES_TTL_S = 1.0
PRUNE_BATCH = 5000


def _configure(conn: sqlite3.Connection) -> None:
    """Conveyor's settings on every new connection (docs/architecture.md, SQLite store)."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    # A failed dependency's cancel cascades through its dependents by one nested firing of
    # the jobs_settle_dependents trigger per level (migration 0007).
    conn.execute("PRAGMA recursive_triggers = ON")


def to_us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000) if value.tzinfo else _naive(value)


def _naive(value: datetime) -> int:
    raise ValueError(f"naive datetime {value!r}: Conveyor times carry a timezone")


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _now_us(now: datetime | None) -> int:
    return to_us(now) if now is not None else time.time_ns() // 1000


def _clocks(now: datetime | None) -> tuple[int, int]:
    """`now` (this moment when None) on the wall clock and on the lease clock, in µs. A
    given `now` moves the lease clock by as much as it differs from the wall clock's now,
    so that tests and tools can play a moment ahead on both."""
    lease_now = clock.lease_us()
    if now is None:
        return clock.wall_us(), lease_now
    wall = to_us(now)
    return wall, lease_now + (wall - clock.wall_us())


def _lease_after(lease_now: int, lease: timedelta) -> int:
    return lease_now + int(lease.total_seconds() * 1_000_000)


# Column places by the names a statement returns. sqlite3.Row finds a column by name with a
# scan of all its names; read by place, a claimed job's two dozen fields cost far less.
_LAYOUTS: dict[tuple[str, ...], dict[str, int]] = {}


def _layout(row: sqlite3.Row) -> dict[str, int]:
    names = tuple(row.keys())
    layout = _LAYOUTS.get(names)
    if layout is None:  # the first of two equal names, as row[name] would
        layout = {name: i for i, name in reversed(list(enumerate(names)))}
        _LAYOUTS[names] = layout
    return layout


def row_to_job(row: sqlite3.Row, at: dict[str, int] | None = None) -> Job:
    """The job in `row`; `at` is its statement's `_layout`, when the caller has it already."""
    if at is None:
        at = _layout(row)
    return Job(
        id=row[at["id"]],
        type=row[at["type"]],
        queue=row[at["queue"]],
        payload=decode(row[at["payload"]]),
        priority=row[at["priority"]],
        status=STATUSES[row[at["status"]]],
        attempts=row[at["attempts"]],
        max_attempts=row[at["max_attempts"]],
        # a job waiting for dependencies shows the run_at it asked for, not the held one
        run_at=from_us(row[at["held_run_at"]] or row[at["run_at"]]),  # type: ignore[arg-type]
        unique_key=row[at["unique_key"]],
        result=decode(row[at["result"]]),
        last_error=row[at["last_error"]],
        worker=row[at["worker"]],
        created_at=from_us(row[at["created_at"]]),  # type: ignore[arg-type]
        updated_at=from_us(row[at["updated_at"]]),  # type: ignore[arg-type]
        started_at=from_us(row[at["started_at"]]),
        finished_at=from_us(row[at["finished_at"]]),
        progress=row[at["progress"]],
        progress_message=row[at["progress_message"]],
        concurrency_key=row[at["concurrency_key"]],
        depends_on=_ids(row[at["depends_on"]]),
        on_dependency_failure=POLICIES[row[at["on_dependency_failure"]]],
        trace_context=row[at["trace_context"]],
    )


def _wait_again(conn: sqlite3.Connection, retried: list[int]) -> None:
    """Retried jobs with dependencies wait again for those unfinished now (SPEC §8)."""
    if not retried:
        return
    params = {"ids": jsontext.dumps(retried), "held": to_us(dependencies.WAITING_RUN_AT)}
    for query in ("wait_again_edges", "wait_again_mark", "wait_again"):
        conn.execute(Q[query], params)


def _ids(text: str | None) -> tuple[int, ...]:
    """A stored JSON array of ids, "[1,2]" (written by this store, so no general parse)."""
    return tuple(int(i) for i in text[1:-1].split(",")) if text and text != "[]" else ()


def row_to_queue(row: sqlite3.Row, now_us: int) -> QueueSettings:
    """A `queues` row as QueueSettings; a backoff (paused_until) that has passed is None."""
    count, period = row["rate_limit"], row["rate_period"]
    paused_until = row["paused_until"]
    return QueueSettings(
        name=row["name"],
        concurrency=row["concurrency"],
        rate_limit=None if count is None else RateLimit(count, period // 1_000_000),
        key_concurrency=row["key_concurrency"],
        fair=bool(row["fair"]),
        paused=bool(row["paused"]),
        paused_until=from_us(paused_until) if paused_until and paused_until > now_us else None,
    )


def path_from_url(url: str) -> str:
    """sqlite:///relative.db → relative.db; sqlite:////abs/path.db → /abs/path.db."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigurationError(
            f"malformed SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    return url[len(prefix) :].split("?", 1)[0]


class SqliteStore(Store):
    """One file, many processes. Each thread gets its own connection (sqlite3 objects are
    not shared across threads); every write is one short BEGIN IMMEDIATE transaction."""

    # and, within a process, one at a time (Connections.write_lock): a worker's claims and
    # outcomes come from one thread, whose connection's page cache stays warm between them
    serial_writes = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        # Connections, the write lock and file trouble: connections.py.
        self._db = Connections(self.path, busy_timeout=BUSY_TIMEOUT_S, configure=_configure)
        self._write_lock = self._db.write_lock
        self._lease_clock_checked = False
        self._rules: tuple[bool | None, float] = (None, 0.0)

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(path_from_url(url))

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- connections ---------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection with Conveyor's settings (also used by the notifier)."""
        return self._db.connect()

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front, so it
        waits (busy_timeout) instead of failing later on a read→write upgrade. Any sqlite3
        error in it (BEGIN, the body, COMMIT) is rolled back and raised as StoreUnavailable."""
        return self._db.write()

    def _write_one(self, query: str, params: dict[str, object]) -> list[sqlite3.Row]:
        """One statement in its own (implicit) transaction: a single DML statement takes the
        write lock when it starts, so it is atomic and waits in busy_timeout like BEGIN
        IMMEDIATE, at a third of the round trips."""
        return self._db.write_one(query, params)

    def _read(self, query: str, params: dict[str, object] | None = None) -> list[sqlite3.Row]:
        return self._db.read(query, params)

    def close(self) -> None:
        self._db.close()

    def check_identity(self) -> None:
        """StoreFileReplaced once the file was deleted, renamed or replaced under us."""
        self._db.file.check(force=True)

    def notifier(self) -> Notifier:
        from conveyor.stores.sqlite.notifier import SqliteNotifier

        return SqliteNotifier(self)

    def finish_listener(self) -> FinishListener:
        from conveyor.stores.sqlite.notifier import SqliteFinishListener

        return SqliteFinishListener(self)

    # -- lifecycle -------------------------------------------------------------------
    def schema_version(self) -> int:
        """0 without a schema. A database file that does not exist is not created (its
        directory must exist): a read-only command must leave nothing behind."""
        file = self._db.file
        if (
            not file.special
            and file.identity is None
            and not os.path.lexists(file.absolute)
            and os.path.isdir(os.path.dirname(file.absolute))
        ):
            return 0
        with self._db.reading() as conn:
            try:
                return int(conn.execute(Q["schema_version"]).fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return 0
                raise

    @property
    def latest_version(self) -> int:
        return MIGRATIONS[-1][0] if MIGRATIONS else 0

    def migrate(self) -> int:
        with self._write() as conn:
            conn.execute(Q["create_schema_version"])
            current = int(conn.execute(Q["schema_version"]).fetchone()[0])
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    Q["record_migration"], {"version": version, "name": name, "now": _now_us(None)}
                )
            return MIGRATIONS[-1][0] if MIGRATIONS else 0

    def ping(self) -> None:
        """Reachable, the same file as first opened, and writable (for /readyz): a stat and
        an access(2) or two, then one read. No write lock is taken (a busy store must not
        make /readyz wait); this thread's connection, if opened read-only, is reopened."""
        self._db.check_writable()
        self._read(Q["ping"])

    # -- producers -----------------------------------------------------------------------
    def enqueue(self, job: NewJob, *, connection: object | None = None) -> EnqueueResult:
        payload = decode(job.payload_json)
        if connection is not None:
            if not isinstance(connection, sqlite3.Connection):
                raise TypeError("connection must be a sqlite3.Connection for a SQLite store")
            return self._insert(connection, job, _now_us(None), payload)
        if job.unique_key is not None or job.depends_on:
            with self._write() as conn:  # insert-or-read-holder must be one transaction
                return self._insert(conn, job, _now_us(None), payload)
        with self._db.autocommit() as conn:
            return self._insert(conn, job, _now_us(None), payload)

    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        now = _now_us(None)
        payloads = decode_payloads(jobs)
        with self._write() as conn:
            if not any(job.depends_on_items for job in jobs):
                return [
                    self._insert(conn, job, now, payload)
                    for job, payload in zip(jobs, payloads, strict=True)
                ]
            results: list[EnqueueResult] = []
            for job, payload in zip(jobs, payloads, strict=True):  # "@i": an inserted job
                earlier = tuple(results[i].job.id for i in job.depends_on_items)
                results.append(self._insert(conn, job, now, payload, earlier))
            return results

    def _insert(
        self,
        conn: sqlite3.Connection,
        job: NewJob,
        now: int,
        payload: JSONValue,
        earlier: tuple[int, ...] = (),
    ) -> EnqueueResult:
        if job.depends_on or earlier:
            return self._insert_dependent(conn, job, now, sorted({*job.depends_on, *earlier}))
        run_at = to_us(job.run_at) if job.run_at is not None else now
        row = conn.execute(
            Q["enqueue"],
            {
                "type": job.type,
                "queue": job.queue,
                "payload": job.payload_json,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "run_at": run_at,
                "unique_key": job.unique_key,
                "concurrency_key": job.concurrency_key,
                "trace_context": job.trace_context,
                "now": now,
            },
        ).fetchone()
        if row is None:
            holder = conn.execute(
                Q["get_unfinished_by_unique_key"], {"unique_key": job.unique_key}
            ).fetchone()
            # In one write transaction the holder cannot finish between the two statements.
            return EnqueueResult(row_to_job(holder), created=False)
        created = from_us(now)
        assert created is not None
        run_at_dt = from_us(run_at)
        assert run_at_dt is not None
        inserted = job.as_inserted(row[0], run_at=run_at_dt, at=created, payload=payload)
        return EnqueueResult(inserted, created=True)

    def _insert_dependent(
        self, conn: sqlite3.Connection, job: NewJob, now: int, depends_on: list[int]
    ) -> EnqueueResult:
        """Insert a job with dependencies (SPEC §8) in the caller's write transaction."""
        ids = jsontext.dumps(depends_on)
        found = {
            row["id"]: dependencies.Dependency(JobStatus(row["status"]), row["depth"])
            for row in conn.execute(Q["read_dependencies"], {"ids": ids})
        }
        plan = dependencies.plan(tuple(depends_on), found, job.on_dependency_failure)
        if job.unique_key is not None:  # the holder, as _insert returns it
            holder = conn.execute(
                Q["get_unfinished_by_unique_key"], {"unique_key": job.unique_key}
            ).fetchone()
            if holder is not None:
                return EnqueueResult(row_to_job(holder), created=False)
        run_at = to_us(job.run_at) if job.run_at is not None else now
        waiting = len(plan.waiting_on)
        row = conn.execute(
            Q["enqueue_dependent"],
            {
                "type": job.type,
                "queue": job.queue,
                "payload": job.payload_json,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "run_at": to_us(dependencies.WAITING_RUN_AT) if waiting else run_at,
                "held_run_at": run_at if waiting else None,
                "unique_key": job.unique_key,
                "concurrency_key": job.concurrency_key,
                "depends_on": ids,
                "on_dependency_failure": job.on_dependency_failure.value,
                "waiting_for": waiting,
                "depth": plan.depth,
                "status": plan.status.value,
                "last_error": plan.cancelled_by,
                "finished_at": now if plan.cancelled_by is not None else None,
                "trace_context": job.trace_context,
                "now": now,
            },
        ).fetchone()
        job_id = row[0]
        conn.execute(Q["name_dependencies"], {"ids": ids, "job_id": job_id})
        if waiting:
            waited = jsontext.dumps(plan.waiting_on)
            conn.execute(Q["add_dependencies"], {"ids": waited, "job_id": job_id})
            conn.execute(Q["mark_dependents"], {"ids": waited})
        inserted = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        return EnqueueResult(row_to_job(inserted), created=True)

    def dependency_jobs(self, job_id: int) -> list[Job]:
        return [row_to_job(row) for row in self._read(Q["dependency_jobs"], {"id": job_id})]

    def dependents(self, job_id: int, *, limit: int = 100) -> list[Job]:
        rows = self._read(Q["dependents"], {"id": job_id, "limit": limit})
        return [row_to_job(row) for row in rows]

    def starts(self, job_id: int) -> list[datetime] | None:
        rows = self._read(Q["job_starts"], {"id": job_id})
        if not rows:
            return None
        earlier, last = rows[0]
        times = cast(list[int], jsontext.loads(earlier)) if earlier else []
        if last is not None:
            times.append(last)
        return [datetime.fromtimestamp(t / 1_000_000, UTC) for t in times]

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
        self._check_lease_clock()
        params = _claim_params(worker, queues, limit, lease, _clocks(now))
        query = self._claim_query()
        if query is Q["claim_plain"]:  # one statement: its own transaction
            return _claimed(self._write_one(query, params))
        with self._write() as conn:
            return _claimed(_claim(conn, query, params))

    def _claim_query(self) -> str:
        """claim_plain while no queue has settings, else claim; read again when the answer
        is older than RULES_TTL_S."""
        restricted, read_at = self._rules
        now = time.monotonic()
        if restricted is None or now - read_at > RULES_TTL_S:
            restricted = bool(self._read(Q["queue_rules"]))
            self._rules = (restricted, now)
        return Q["claim"] if restricted else Q["claim_plain"]

    def heartbeat(
        self,
        refs: Sequence[LeaseRef],
        *,
        lease: timedelta,
        progress: Mapping[int, tuple[float, str | None]] | None = None,
        now: datetime | None = None,
    ) -> Renewal:
        renewal = Renewal()
        if not refs:
            return renewal
        self._check_lease_clock()
        until = _lease_after(_clocks(now)[1], lease)
        progress = progress or {}
        with self._write() as conn:
            for ref in refs:
                row = conn.execute(Q["heartbeat"], {**_fence(ref), "lease_until": until}).fetchone()
                if row is None:
                    renewal.lost.add(ref.job_id)
                elif row[0] != JobStatus.PROCESSING:
                    renewal.stop.add(ref.job_id)
                elif ref.job_id in progress:
                    fraction, message = progress[ref.job_id]
                    conn.execute(
                        Q["report_progress"],
                        {**_fence(ref), "progress": fraction, "progress_message": message},
                    )
        return renewal

    def finish_many(
        self, finishes: Sequence[Finish], *, now: datetime | None = None
    ) -> dict[int, JobStatus]:
        if not finishes:
            return {}
        with self._write() as conn:
            return _finish(conn, finishes, _now_us(now))

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
        self._check_lease_clock()
        clocks = _clocks(now)
        query = self._claim_query()
        with self._write() as conn:
            applied = _finish(conn, finishes, clocks[0])
            params = _claim_params(worker, queues, limit, lease, clocks)
            rows = _claim(conn, query, params) if limit > 0 else []
            return applied, _claimed(rows)

    def release(
        self,
        refs: Sequence[LeaseRef],
        *,
        now: datetime | None = None,
        not_before: datetime | None = None,
    ) -> set[int]:
        released: set[int] = set()
        if not refs:
            return released
        self._check_lease_clock()
        wall_now, lease_now = _clocks(now)
        until = None if not_before is None else lease_now + (to_us(not_before) - wall_now)
        with self._write() as conn:
            for ref in refs:
                params = {
                    **_fence(ref),
                    "now": wall_now,
                    "run_at": wall_now if not_before is None else to_us(not_before),
                    "lease_until": until,
                }
                if conn.execute(Q["release"], params).rowcount == 1:
                    released.add(ref.job_id)
                else:
                    conn.execute(Q["end_run"], {**_fence(ref), "lease_until": until})
        return released

    def recover_expired(self, *, limit: int = 1000, now: datetime | None = None) -> RecoveryResult:
        self._check_lease_clock()
        wall_now, lease_now = _clocks(now)
        params = {"now": wall_now, "lease_now": lease_now, "limit": limit}
        with self._write() as conn:
            rows = conn.execute(Q["recover_expired"], params).fetchall()
            conn.execute(Q["forget_workers"], {"lease_now": lease_now})
        result = RecoveryResult()
        for job_id, status in rows:
            (result.requeued if status == "pending" else result.failed).append(job_id)
        return result

    # -- operators -------------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job | None:
        rows = self._read(Q["get_job"], {"id": job_id})
        return row_to_job(rows[0]) if rows else None

    def finished_among(self, job_ids: Sequence[int]) -> dict[int, Job | None]:
        rows = self._read(Q["finished_among"], {"ids": jsontext.dumps(list(job_ids))})
        return {row["wanted"]: None if row["id"] is None else row_to_job(row) for row in rows}

    def list_jobs(self, query: JobFilter) -> list[Job]:
        rows = self._read(
            Q["list_jobs"],
            {
                "status": None if query.status is None else query.status.value,
                "type": query.type,
                "queue": query.queue,
                "before_id": query.before_id,
                "limit": query.limit,
            },
        )
        return [row_to_job(row) for row in rows]

    def cancel(self, job_id: int, *, now: datetime | None = None) -> Job:
        with self._write() as conn:
            if not self._cancel_ids(conn, [job_id], _now_us(now)):
                self._explain_refusal(conn, job_id, "cancel")
            row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        return row_to_job(row)

    def retry(self, job_id: int, *, now: datetime | None = None) -> Job:
        with self._write() as conn:
            if not self._retry_ids(conn, [job_id], _now_us(now)):
                self._explain_refusal(conn, job_id, "retry")
            row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        return row_to_job(row)

    @staticmethod
    def _explain_refusal(conn: sqlite3.Connection, job_id: int, action: str) -> None:
        current = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        status = None if current is None else JobStatus(current["status"])
        blocker = None
        if action == "retry" and current is not None:
            for row in conn.execute(Q["retry_blocked"], {"ids": jsontext.dumps([job_id])}):
                blocker = (row["dependency"], row["status"])
                break
        raise refusal(job_id, status, action, blocker)

    def cancel_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        now_us, cancelled = _now_us(now), []
        for batch in id_batches(ids):
            with self._write() as conn:  # one short write transaction per batch
                cancelled += self._cancel_ids(conn, batch, now_us, status)
        return cancelled

    def retry_many(
        self, ids: Sequence[int], *, status: JobStatus | None = None, now: datetime | None = None
    ) -> list[int]:
        now_us, retried = _now_us(now), []
        for batch in id_batches(ids):
            with self._write() as conn:
                retried += self._retry_ids(conn, batch, now_us, status)
        return retried

    @staticmethod
    def _cancel_ids(
        conn: sqlite3.Connection, ids: Sequence[int], now_us: int, status: JobStatus | None = None
    ) -> list[int]:
        """pending|processing → cancelled for `ids` (only those in `status`, when given), in
        the caller's write transaction: the one cancel statement of `cancel`, `cancel_many`
        and bulk cancels. Tells the workers of runs that held a cancelled job. Returns the ids
        cancelled, ascending."""
        params = {"ids": jsontext.dumps(list(ids)), "now": now_us, "status": _value(status)}
        rows = conn.execute(Q["cancel_many"], params).fetchall()
        if any(row["held"] for row in rows):  # a run holds one: tell every worker process
            conn.execute(Q["signal_cancel"])
        return sorted(row["id"] for row in rows)

    @staticmethod
    def _retry_ids(
        conn: sqlite3.Connection, ids: Sequence[int], now_us: int, status: JobStatus | None = None
    ) -> list[int]:
        """failed|cancelled → pending for `ids` (only those in `status`, when given), in the
        caller's write transaction: the one retry statement of `retry`, `retry_many` and bulk
        retries. A job whose unique_key an unfinished job holds is skipped. Returns the ids
        retried, ascending."""
        blocked = {
            row["id"]
            for row in conn.execute(Q["retry_blocked"], {"ids": jsontext.dumps(list(ids))})
        }
        ids = [job_id for job_id in ids if job_id not in blocked]
        params = {"ids": jsontext.dumps(list(ids)), "now": now_us, "status": _value(status)}
        try:
            rows = conn.execute(Q["retry_many"], params).fetchall()
        except sqlite3.IntegrityError:
            # Two of `ids` share a unique_key. The failed statement was undone (the
            # transaction goes on); one id at a time, each sees the key the ones before took.
            rows = []
            for job_id in ids:
                one = {**params, "ids": jsontext.dumps([job_id])}
                rows += conn.execute(Q["retry_many"], one).fetchall()
        retried = sorted(row["id"] for row in rows)
        _wait_again(conn, retried)
        return retried

    def bulk_bounds(self, query: BulkFilter) -> tuple[int, int] | None:
        name = _BULK_BOUNDS.get(query.status, "bulk_bounds_retryable")
        row = self._read(Q[name], _bulk_params(query))[0]
        return None if row["low"] is None else (row["low"], row["high"])

    def bulk_ids(self, query: BulkFilter, *, after: int, upto: int, limit: int) -> list[int]:
        name = "bulk_cancel_ids" if query.status in CANCELLABLE else "bulk_retry_ids"
        params = {**_bulk_params(query), "after": after, "upto": upto, "limit": limit}
        return [row["id"] for row in self._read(Q[name], params)]

    def prune(
        self,
        *,
        older_than: timedelta,
        now: datetime | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> int:
        cutoff = _now_us(now) - int(older_than.total_seconds() * 1_000_000)
        total = 0
        for batch in prune_batches(status, limit, PRUNE_BATCH):
            with self._write() as conn:  # one short transaction per batch
                params = {"status": batch.status.value, "cutoff": cutoff, "batch": batch.size}
                deleted = conn.execute(Q["prune"], params).rowcount
            total += deleted
            batch.deleted(deleted)
        return total

    # -- leadership ------------------------------------------------------------------------
    def try_lead(
        self, role: str, holder: str, *, ttl: timedelta, now: datetime | None = None
    ) -> bool:
        self._check_lease_clock()
        lease_now = _clocks(now)[1]
        params = {
            "role": role,
            "holder": holder,
            "until": _lease_after(lease_now, ttl),
            "lease_now": lease_now,
        }
        return bool(self._write_one(Q["try_lead"], params))

    def resign(self, role: str, holder: str) -> None:
        self._write_one(Q["resign"], {"role": role, "holder": holder})

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for row in self._read(Q["stats"]):
            out.setdefault(row["queue"], {})[row["status"]] = row["n"]
        return out

    # -- fleet observability (SPEC §9) -----------------------------------------------------
    def register_worker(
        self, worker: WorkerInfo, *, lease: timedelta, now: datetime | None = None
    ) -> None:
        self._check_lease_clock()
        wall_now, lease_now = _clocks(now)
        params = {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "queues": None if worker.queues is None else jsontext.dumps(list(worker.queues)),
            "slots": worker.slots,
            "busy": worker.busy,
            "version": worker.version,
            "started_at": to_us(worker.started_at),
            "now": wall_now,
            "expires_at": _lease_after(lease_now, lease * LIVE_LEASES),
        }
        self._write_one(Q["register_worker"], params)

    def unregister_worker(self, worker_id: str) -> None:
        self._write_one(Q["unregister_worker"], {"id": worker_id})

    def list_workers(self, *, now: datetime | None = None) -> list[WorkerInfo]:
        self._check_lease_clock()
        rows = self._read(Q["list_workers"], {"lease_now": _clocks(now)[1]})
        return [_worker(row) for row in rows]

    def minute_stats(self, since: datetime) -> list[MinuteStats]:
        rows = self._read(Q["minute_stats"], {"since": to_us(since) // 60_000_000})
        return [
            MinuteStats(
                minute=datetime.fromtimestamp(row["minute"] * 60, UTC),
                wait_bucket=row["wait_bucket"],
                run_bucket=row["run_bucket"],
                finished=row["finished"],
                failed=row["failed"],
                retried=row["retried"],
            )
            for row in rows
        ]

    def oldest_pending(self, *, now: datetime | None = None) -> dict[str, datetime]:
        rows = self._read(Q["oldest_pending"], {"now": _now_us(now)})
        return {row["queue"]: from_us(row["run_at"]) for row in rows}  # type: ignore[misc]

    def compact_stats(self, *, keep: timedelta, now: datetime | None = None) -> int:
        before = (_now_us(now) - int(keep.total_seconds() * 1_000_000)) // 60_000_000
        with self._write() as conn:
            return conn.execute(Q["prune_minutes"], {"before": before}).rowcount

    # -- queue settings (SPEC §7) ----------------------------------------------------------
    def list_queues(self) -> list[QueueSettings]:
        now = _now_us(None)
        rows = self._read(Q["list_queues"])
        return sorted((row_to_queue(row, now) for row in rows), key=lambda q: q.name)

    def configure_queue(self, name: str, **changes: Unpack[QueueChanges]) -> QueueSettings:
        rate = changes.get("rate_limit")
        params = {
            "name": name,
            "concurrency": changes.get("concurrency"),
            "rate_limit": None if rate is None else rate.count,
            "rate_period": None if rate is None else rate.period * 1_000_000,
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
        return self._queue_write("hold_queue", {"name": name, "until": to_us(until)})

    def _queue_write(self, query: str, params: Mapping[str, object]) -> QueueSettings:
        """One upsert of a `queues` row in its own transaction; the notifier of every worker
        process sees the commit (data_version) and claims again."""
        now = _now_us(None)
        (row,) = self._write_one(Q[query], {**params, "now": now})
        self._rules = (None, 0.0)  # this process's own claims see it at once
        return row_to_queue(row, now)

    # -- periodic jobs ---------------------------------------------------------------------
    def register_periodic(
        self, periodic: Sequence[Periodic], *, now: datetime | None = None
    ) -> list[PeriodicState]:
        at = _now_us(now)
        with self._write() as conn:
            for p in periodic:
                params = {
                    "name": p.name,
                    "schedule": p.schedule.expression,
                    "timezone": p.schedule.timezone,
                    "now": at,
                }
                conn.execute(Q["register_periodic"], params)
        names = {p.name for p in periodic}
        return [state for state in self.list_periodic() if state.name in names]

    def enqueue_periodic(
        self, periodic: Periodic, tick: datetime, *, now: datetime | None = None
    ) -> EnqueueResult | None:
        job = periodic.job_for(tick)
        payload = decode(job.payload_json)
        at = _now_us(now)
        params = {
            "name": periodic.name,
            "schedule": periodic.schedule.expression,
            "timezone": periodic.schedule.timezone,
            "tick": to_us(tick),
            "now": at,
        }
        # One BEGIN IMMEDIATE transaction: the compare-and-set, then the job, then its id.
        with self._write() as conn:
            if conn.execute(Q["enqueue_periodic"], params).fetchone() is None:
                return None
            result = self._insert(conn, job, at, payload)
            conn.execute(Q["periodic_job"], {"name": periodic.name, "job_id": result.job.id})
        return result

    def list_periodic(self) -> list[PeriodicState]:
        return [_periodic_state(row) for row in self._read(Q["list_periodic"])]

    # -- the lease clock -----------------------------------------------------------------
    def _check_lease_clock(self) -> None:
        """Once per store object: make the stored lease deadlines this boot's (see clock.py).
        A first start after migration 0002 converts wall-clock deadlines; a reboot expires
        them all (their processes are gone)."""
        if self._lease_clock_checked or clock.BOOT_ID is None:
            return
        with self._write() as conn:
            try:
                row = conn.execute(Q["lease_clock"]).fetchone()
            except sqlite3.OperationalError:
                return  # not migrated yet: nothing holds a lease
            if row is None:
                wall_now, lease_now = _clocks(None)
                conn.execute(Q["convert_leases"], {"wall_now": wall_now, "lease_now": lease_now})
            elif row[0] != clock.BOOT_ID:
                conn.execute(Q["expire_leases"])
            if row is None or row[0] != clock.BOOT_ID:
                with contextlib.suppress(sqlite3.OperationalError):  # before migration 0005
                    conn.execute(Q["expire_leaders"])
                with contextlib.suppress(sqlite3.OperationalError):  # before migration 0010
                    conn.execute(Q["forget_all_workers"])
                conn.execute(Q["set_lease_clock"], {"boot_id": clock.BOOT_ID})
        self._lease_clock_checked = True

    # -- data_version, for the notifier ----------------------------------------------------
    def data_version(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute(Q["data_version"]).fetchone()[0])

    def cancel_signal(self, conn: sqlite3.Connection) -> int:
        """Bumped by every cancel of a job a run holds; 0 before migration 0003."""
        try:
            row = conn.execute(Q["cancel_signal"]).fetchone()
        except sqlite3.OperationalError:
            return 0
        return 0 if row is None else int(row[0])


# The bounds statement of a bulk cancel per status: each names its status as a literal, so
# that SQLite reads the status's own partial index.
_BULK_BOUNDS = {
    JobStatus.PENDING: "bulk_bounds_pending",
    JobStatus.PROCESSING: "bulk_bounds_processing",
}


def _bulk_params(query: BulkFilter) -> dict[str, object]:
    before = query.created_before
    return {
        "status": query.status.value,
        "queue": query.queue,
        "type": query.type,
        "created_before": None if before is None else to_us(before),
    }


def _value(status: JobStatus | None) -> str | None:
    return None if status is None else status.value


def _worker(row: sqlite3.Row) -> WorkerInfo:
    started_at, last_heartbeat = from_us(row["started_at"]), from_us(row["last_heartbeat"])
    assert started_at is not None
    assert last_heartbeat is not None
    queues = row["queues"]
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=None if queues is None else tuple(cast(list[str], jsontext.loads(queues))),
        slots=row["slots"],
        busy=row["busy"],
        version=row["version"],
        started_at=started_at,
        last_heartbeat=last_heartbeat,
    )


def _periodic_state(row: sqlite3.Row) -> PeriodicState:
    since, updated_at = from_us(row["since"]), from_us(row["updated_at"])
    assert since is not None
    assert updated_at is not None
    status = row["last_job_status"]
    return PeriodicState(
        name=row["name"],
        schedule=row["schedule"],
        timezone=row["timezone"],
        since=since,
        last_tick=from_us(row["last_tick"]),
        last_job_id=row["last_job_id"],
        last_job_status=None if status is None else JobStatus(status),
        updated_at=updated_at,
    )


def _claim_params(
    worker: str,
    queues: Sequence[str] | None,
    limit: int,
    lease: timedelta,
    clocks: tuple[int, int],
) -> dict[str, object]:
    wall_now, lease_now = clocks
    return {
        "worker": worker,
        "now": wall_now,
        "lease_now": lease_now,
        "lease_until": _lease_after(lease_now, lease),
        "limit": limit,
        "queues": jsontext.dumps(list(queues)) if queues else None,
    }


def _claim(conn: sqlite3.Connection, query: str, params: dict[str, object]) -> list[sqlite3.Row]:
    """Run a claim; after the full one (queues with settings), record the starts that rate
    windows and fair turns count, in the same transaction. claim_plain takes no job of such
    a queue."""
    rows = conn.execute(query, params).fetchall()
    if rows and query is Q["claim"]:
        starts = {"ids": jsontext.dumps([row["id"] for row in rows]), "now": params["now"]}
        for name in ("forget_starts", "add_starts", "serve_keys"):
            conn.execute(Q[name], starts)
    return rows


def _claimed(rows: Sequence[sqlite3.Row]) -> list[Job]:
    if not rows:
        return []
    at = _layout(rows[0])
    jobs = [row_to_job(row, at) for row in rows]
    # RETURNING order is unspecified; hand jobs out in claim order.
    jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
    return jobs


def _finish(
    conn: sqlite3.Connection, finishes: Sequence[Finish], now_us: int
) -> dict[int, JobStatus]:
    """Write outcomes inside the caller's transaction: every `done` in one executemany, the
    rest one by one (they are rare and need their new status back). A run whose job is no
    longer processing under its ref (cancelled, or a lease lost) writes no outcome; if it
    still holds the lease, the lease ends (end_run)."""
    applied: dict[int, JobStatus] = {}
    done = [f for f in finishes if f.kind == FinishKind.DONE]
    rows: list[dict[str, object]] = [
        {**_fence(f.ref), "result": f.result_json, "now": now_us} for f in done
    ]
    missed = _missed(conn, Q["complete"], rows)
    # not applied: a job others wait for (complete_settling), or a run no longer holding it
    settled = {i for i in missed if conn.execute(Q["complete_settling"], rows[i]).rowcount}
    missed -= settled
    unapplied = [fin for i, fin in enumerate(done) if i in missed]
    applied.update(
        (fin.ref.job_id, JobStatus.DONE) for i, fin in enumerate(done) if i not in missed
    )
    if applied:  # counts and aggregates of the batch (SPEC §9), not a trigger per job
        ids = {"ids": jsontext.dumps(list(applied))}
        conn.execute(Q["count_done"], ids)
        conn.execute(Q["done_minutes"], ids)
    for fin in finishes:
        if fin.kind == FinishKind.DONE:
            continue
        status = _finish_one(conn, fin, now_us)
        if status is None:
            unapplied.append(fin)
        else:
            applied[fin.ref.job_id] = status
    for fin in unapplied:
        conn.execute(Q["end_run"], {**_fence(fin.ref), "lease_until": None})
    return applied


def _finish_one(conn: sqlite3.Connection, fin: Finish, now_us: int) -> JobStatus | None:
    """A retry, failure or snooze; None when the ref no longer holds a processing job."""
    retry_at = None if fin.retry_at is None else to_us(fin.retry_at)
    if fin.kind == FinishKind.SNOOZED:
        params = {**_fence(fin.ref), "retry_at": retry_at, "now": now_us}
        return JobStatus.PENDING if conn.execute(Q["snooze"], params).rowcount else None
    if fin.kind not in (FinishKind.RETRY, FinishKind.FAILED):
        return None  # ended: no outcome
    params = {**_fence(fin.ref), "error": fin.error, "retry_at": retry_at, "now": now_us}
    row = conn.execute(Q["fail"], params).fetchone()
    return None if row is None else JobStatus(row[0])


def _fence(ref: LeaseRef) -> dict[str, object]:
    return {"id": ref.job_id, "worker": ref.worker, "attempt": ref.attempt}


def _missed(conn: sqlite3.Connection, query: str, rows: list[dict[str, object]]) -> set[int]:
    """Run a fenced UPDATE for every row in one executemany; return the indexes of rows it
    did not apply to. The common case (all applied) costs one call; otherwise each row is
    checked against the fence and the write's own timestamp (query `written_by`)."""
    if not rows:
        return set()
    if conn.executemany(query, rows).rowcount == len(rows):
        return set()
    check = Q["written_by"]
    return {i for i, row in enumerate(rows) if conn.execute(check, row).fetchone() is None}


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (sqlite3 runs one per execute)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError(f"incomplete statement in migration: {buffer[:80]!r}")

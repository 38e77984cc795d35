"""Pure data: job statuses, the Job record, a job to insert, and the lease fencing token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, TypeAlias, TypedDict, cast

from conveyor import jsontext

JSONValue: TypeAlias = (
    bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OnDependencyFailure(StrEnum):
    """What a job does when one of its dependencies ends failed or cancelled (SPEC §8)."""

    CANCEL = "cancel"  # it ends cancelled too, and so do its own dependents (the default)
    RUN = "run"  # it runs once its dependencies have finished, whatever their status


# By value, for the stores' rows → Jobs: an Enum call costs about a microsecond a row.
STATUSES: Mapping[str, JobStatus] = {status.value: status for status in JobStatus}
POLICIES: Mapping[str, OnDependencyFailure] = {p.value: p for p in OnDependencyFailure}

UNFINISHED = (JobStatus.PENDING, JobStatus.PROCESSING)
FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

# SPEC §1 ranges and defaults: every entry point (validation.py, the HTTP schemas, the CLI's
# help, Settings) reads them from here.
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767
MAX_ATTEMPTS_MIN, MAX_ATTEMPTS_MAX = 1, 1000
DELAY_MAX_SECONDS = 31_536_000
NAME_MAX = 200  # type and queue, in characters
UNIQUE_KEY_MAX = 255
CONCURRENCY_KEY_MAX = 255
DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 0
DEFAULT_MAX_ATTEMPTS = 5  # MAX_ATTEMPTS's default (Settings), for tasks that set none
# Ids are 64-bit integers in both stores; a larger number names no job.
ID_MAX = 2**63 - 1
# Listings (GET /jobs, `conveyor jobs list`, `Conveyor.list_jobs`): jobs per page.
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


# Job and NewJob are built once per job on every enqueue and claim, so they are plain
# (not frozen) dataclasses: a frozen one's __init__ sets each field through
# object.__setattr__, several times slower (docs/performance.md, third round).
@dataclass(slots=True)
class Job:
    """A job as stored (SPEC §1): a snapshot, so changing it changes nothing in the store.
    `status` is a str enum, so `job.status == "done"` holds."""

    id: int
    type: str
    queue: str
    payload: JSONValue
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    unique_key: str | None
    result: JSONValue
    last_error: str | None
    worker: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: float | None = None  # what the running task last reported (SPEC §6)
    progress_message: str | None = None
    concurrency_key: str | None = None  # key_concurrency and fair share (SPEC §7)
    depends_on: tuple[int, ...] = ()  # SPEC §8: pending until these have finished
    on_dependency_failure: OnDependencyFailure = OnDependencyFailure.CANCEL
    # the enqueuing code's trace context (conveyor/spans.py); not one of SPEC's job fields
    trace_context: str | None = None

    def lease_ref(self) -> LeaseRef:
        """The fencing token of the claim that produced this job record."""
        assert self.worker is not None, "only a claimed job has a lease"
        return LeaseRef(job_id=self.id, worker=self.worker, attempt=self.attempts)

    def to_json(self) -> dict[str, JSONValue]:
        """The job as SPEC's JSON object (timestamps ISO 8601 with timezone)."""
        return {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "payload": self.payload,
            "priority": self.priority,
            "status": self.status.value,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_at": self.run_at.isoformat(),
            "unique_key": self.unique_key,
            "result": self.result,
            "last_error": self.last_error,
            "worker": self.worker,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "progress": self.progress,
            "progress_message": self.progress_message,
            "concurrency_key": self.concurrency_key,
            "depends_on": list(self.depends_on),
            "on_dependency_failure": self.on_dependency_failure.value,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(slots=True)
class NewJob:
    """A validated job to insert. `payload_json` is the payload already encoded as JSON text."""

    type: str
    payload_json: str
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_at: datetime | None = None  # None: now, by the store's clock
    unique_key: str | None = None
    concurrency_key: str | None = None
    depends_on: tuple[int, ...] = ()  # ids of existing jobs
    # positions of earlier items of the same batch (SPEC §8 "@i"), resolved by the store
    depends_on_items: tuple[int, ...] = ()
    on_dependency_failure: OnDependencyFailure = OnDependencyFailure.CANCEL
    trace_context: str | None = None  # set by the enqueue's span (conveyor/spans.py)

    @property
    def has_dependencies(self) -> bool:
        return bool(self.depends_on or self.depends_on_items)

    def as_inserted(self, id: int, *, run_at: datetime, at: datetime, payload: JSONValue) -> Job:
        """The pending Job this insert produced: the store read back only what the
        database chose (the id, run_at when it was "now", the creation time); `payload`
        is `payload_json` decoded (see `decode_payloads`)."""
        return Job(
            id=id,
            type=self.type,
            queue=self.queue,
            payload=payload,
            priority=self.priority,
            status=JobStatus.PENDING,
            attempts=0,
            max_attempts=self.max_attempts,
            run_at=run_at,
            unique_key=self.unique_key,
            result=None,
            last_error=None,
            worker=None,
            created_at=at,
            updated_at=at,
            started_at=None,
            finished_at=None,
            concurrency_key=self.concurrency_key,
            on_dependency_failure=self.on_dependency_failure,
            trace_context=self.trace_context,
        )


def decode_payloads(jobs: Sequence[NewJob]) -> list[JSONValue]:
    """The jobs' payloads decoded, as the Jobs an insert returns carry them: one parse for
    the whole batch, cheaper than one parse per job (docs/performance.md, third round)."""
    if len(jobs) == 1:
        return [cast(JSONValue, jsontext.loads(jobs[0].payload_json))]
    batch = "[" + ",".join([job.payload_json for job in jobs]) + "]"
    return cast(list[JSONValue], jsontext.loads(batch))


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    job: Job
    created: bool  # False when an unfinished job already held the unique_key


class LeaseRef(NamedTuple):
    """One claim of one job; every worker-side transition presents it (fencing token).

    `attempt` is the `attempts` value the claim set: a later claim of the same job
    has a different worker or attempt, so a stale worker's write matches no row.
    A named tuple: built, compared and hashed per job on the worker's hot path, where a
    frozen dataclass costs several times as much.
    """

    job_id: int
    worker: str
    attempt: int


class FinishKind(StrEnum):
    DONE = "done"  # processing → done with a result
    RETRY = "retry"  # a failed attempt: processing → pending at retry_at
    FAILED = "failed"  # processing → failed for good
    SNOOZED = "snoozed"  # processing → pending at retry_at, the attempt given back
    ENDED = "ended"  # a cancelled run stopped without an outcome: only its lease ends


class Finish(NamedTuple):
    """The end of one run, to be written by `Store.finish_many`: its code has stopped.
    Built by the named constructors. The outcome applies only while the job is still
    processing under `ref`; if an operator cancelled it meanwhile, the outcome is dropped
    and only the run's lease ends. A named tuple, as LeaseRef: one per job."""

    ref: LeaseRef
    kind: FinishKind
    result_json: str = "null"
    error: str | None = None
    retry_at: datetime | None = None
    hold_queue: bool = False  # snoozed with its queue (Snooze(queue=True)): the worker holds it

    @classmethod
    def done(cls, ref: LeaseRef, result_json: str = "null") -> Finish:
        return cls(ref, FinishKind.DONE, result_json)

    @classmethod
    def retry(cls, ref: LeaseRef, error: str, at: datetime) -> Finish:
        return cls(ref, FinishKind.RETRY, error=error, retry_at=at)

    @classmethod
    def failed(cls, ref: LeaseRef, error: str) -> Finish:
        return cls(ref, FinishKind.FAILED, error=error)

    @classmethod
    def snoozed(cls, ref: LeaseRef, at: datetime, *, hold_queue: bool = False) -> Finish:
        return cls(ref, FinishKind.SNOOZED, retry_at=at, hold_queue=hold_queue)

    @classmethod
    def ended(cls, ref: LeaseRef) -> Finish:
        """A cancelled run whose code has stopped: its lease ends, nothing else changes."""
        return cls(ref, FinishKind.ENDED)

    @property
    def outcome(self) -> bool:
        return self.kind != FinishKind.ENDED


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a heartbeat found. `lost`: leases no longer held (the job was recovered after
    its lease expired, and perhaps claimed again); their runs must stop and may write
    nothing. `stop`: leases renewed for runs whose job is no longer processing (an
    operator cancelled it): the run should stop; its lease is kept until it has."""

    lost: set[int] = field(default_factory=set)
    stop: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """Jobs whose lease expired: ids returned to pending and ids failed for good."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.requeued) + len(self.failed)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Operator listing: newest first, keyset pagination by `before_id`. Plain data: build
    it from caller input with `validation.job_filter`, which checks every value."""

    status: JobStatus | None = None
    type: str | None = None
    queue: str | None = None
    before_id: int | None = None
    limit: int = LIST_LIMIT_DEFAULT


# -- bulk actions (SPEC §8) --------------------------------------------------------------------
# The statuses each bulk action applies to: those its per-job rule moves a job from.
CANCELLABLE = (JobStatus.PENDING, JobStatus.PROCESSING)
RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class BulkFilter:
    """The jobs a bulk cancel or retry acts on: every job in `status` (required: a bulk
    action over everything by accident would be a disaster), of `queue` and `type` when
    given, created before `created_before` when given. Plain data: build it from caller
    input with `validation.bulk_filter`, which checks every value."""

    status: JobStatus
    queue: str | None = None
    type: str | None = None
    created_before: datetime | None = None


# -- queue settings (SPEC §7) ------------------------------------------------------------------
# A rate limit's units ("10/s", "600/m", "5000/h") in seconds.
RATE_PERIODS = {"s": 1, "m": 60, "h": 3600}
# concurrency, key_concurrency and a rate's count: from 1 to this (nine digits; both stores
# hold them as 32-bit integers).
QUEUE_LIMIT_MAX = 999_999_999
# What `configure_queue` changes (QueueChanges' keys).
QUEUE_SETTINGS = ("concurrency", "rate_limit", "key_concurrency", "fair")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` jobs of a queue started in any window of `period` seconds, across all
    workers (a sliding window). Written `10/s`, `600/m`, `5000/h`: `str()` gives that text,
    `validation.rate_limit` parses it."""

    count: int
    period: int  # seconds: 1, 60 or 3600

    def __str__(self) -> str:
        for unit, seconds in RATE_PERIODS.items():
            if seconds == self.period:
                return f"{self.count}/{unit}"
        return f"{self.count}/{self.period}s"  # not one of ours (written by hand in the store)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.period)


class QueueChanges(TypedDict, total=False):
    """Validated changes to a queue's settings (`validation.queue_changes` builds them): only
    the settings given change; None clears a limit."""

    concurrency: int | None
    rate_limit: RateLimit | None
    key_concurrency: int | None
    fair: bool


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's flow-control settings as the store holds them (SPEC §7); None means no
    limit. `paused` is an operator's pause (until resumed); `paused_until` the fleet-wide
    backoff of `Snooze(queue=True)`, None once it has passed. `counts` (jobs by status,
    non-zero only) is filled by `Conveyor.queues()`, the listing; None elsewhere."""

    name: str
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    key_concurrency: int | None = None
    fair: bool = False
    paused: bool = False
    paused_until: datetime | None = None
    counts: Mapping[str, int] | None = None

    def to_json(self) -> dict[str, JSONValue]:
        """GET /queues' item (and `conveyor queues … --json`): `rate_limit` as text ("10/s"),
        `paused_until` ISO 8601; `counts` only when it was read."""
        out: dict[str, JSONValue] = {
            "name": self.name,
            "concurrency": self.concurrency,
            "rate_limit": None if self.rate_limit is None else str(self.rate_limit),
            "key_concurrency": self.key_concurrency,
            "fair": self.fair,
            "paused": self.paused,
            "paused_until": _iso(self.paused_until),
        }
        if self.counts is not None:
            out["counts"] = dict(self.counts)
        return out


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)

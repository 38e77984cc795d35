"""The HTTP JSON contract (SPEC §4) as pydantic models.

Requests are strict (no "5" for 5, no unknown fields) and carry SPEC §1's ranges, so
OpenAPI documents them; the same values then go through `Conveyor.build_job`, so the
HTTP API accepts and refuses exactly what the CLI and the Python API do.
Responses are documentation: routes return `Job.to_json()` itself, the one JSON shape
the CLI prints too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

from conveyor import jobs
from conveyor.dependencies import MAX_DEPENDENCIES
from conveyor.validation import RATE_LIMIT_PATTERN, check_name, parse_run_at, rate_limit


def _run_at(value: object) -> datetime:
    # JSON has no datetime: only text reaches the one parser (InvalidJob is a ValueError,
    # which pydantic reports as a 422 with its message)
    if not isinstance(value, str):
        raise ValueError("run_at must be an ISO 8601 timestamp string with a timezone")
    return parse_run_at(value)


def _name(field: str, max_len: int) -> AfterValidator:
    # NUL characters and lone surrogates: the same checks (and messages) as validation.py
    return AfterValidator(lambda value: check_name(value, field, max_len))


def _integral(value: object) -> object:
    # JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees); 5.5 is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Documents what check_name enforces (validation.py gives the message).
NO_NUL: dict[str, Any] = {"pattern": "^[^\\u0000]*$"}

StrictStr = Annotated[str, Field(strict=True, json_schema_extra=NO_NUL)]
TypeName = Annotated[StrictStr, Field(min_length=1, max_length=jobs.NAME_MAX)]
QueueName = Annotated[StrictStr, Field(min_length=1, max_length=jobs.NAME_MAX)]
UniqueKey = Annotated[StrictStr, Field(min_length=1, max_length=jobs.UNIQUE_KEY_MAX)]
ConcurrencyKey = Annotated[StrictStr, Field(min_length=1, max_length=jobs.CONCURRENCY_KEY_MAX)]
Priority = Annotated[
    int,
    Field(strict=True, ge=jobs.PRIORITY_MIN, le=jobs.PRIORITY_MAX),
    BeforeValidator(_integral),  # after Field, so OpenAPI still shows minimum/maximum
]
MaxAttempts = Annotated[
    int,
    Field(strict=True, ge=jobs.MAX_ATTEMPTS_MIN, le=jobs.MAX_ATTEMPTS_MAX),
    BeforeValidator(_integral),
]
Delay = Annotated[float, Field(strict=True, ge=0, le=jobs.DELAY_MAX_SECONDS, allow_inf_nan=False)]
RunAt = Annotated[
    datetime,
    PlainValidator(_run_at),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

# Filters in GET /jobs: the same length and character rules as the fields they match.
TypeFilter = Annotated[
    str,
    Field(min_length=1, max_length=jobs.NAME_MAX, json_schema_extra=NO_NUL),
    _name("type", jobs.NAME_MAX),
]
QueueFilter = Annotated[
    str,
    Field(min_length=1, max_length=jobs.NAME_MAX, json_schema_extra=NO_NUL),
    _name("queue", jobs.NAME_MAX),
]


DependencyRef = Annotated[
    # no upper bound in the schema: an id past the largest is "no job N", as any id that
    # names no job (a schema cannot say which ids exist)
    Annotated[int, Field(strict=True, ge=1), BeforeValidator(_integral)]
    | Annotated[str, Field(pattern=r"^@(0|[1-9][0-9]{0,8})$")],
    Field(description='a job id, or "@i": item i of the same batch'),
]


class JobIn(BaseModel):
    """One job to enqueue (POST /jobs, and each item of POST /jobs/batch)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "reverse", "payload": "hello", "priority": 5, "delay": 10}],
            # delay or run_at, not both
            "not": {
                "required": ["delay", "run_at"],
                "properties": {"delay": {"type": "number"}, "run_at": {"type": "string"}},
            },
        },
    )

    type: TypeName = Field(description="the task that runs the job")
    payload: Any = Field(None, description="any JSON value; an object becomes keyword arguments")
    priority: Priority | None = Field(
        None, description=f"higher runs first; default {jobs.DEFAULT_PRIORITY}"
    )
    queue: QueueName | None = Field(
        None, description=f'default "{jobs.DEFAULT_QUEUE}" (or the task\'s queue)'
    )
    max_attempts: MaxAttempts | None = Field(
        None, description=f"default: the task's, else MAX_ATTEMPTS ({jobs.DEFAULT_MAX_ATTEMPTS})"
    )
    delay: Delay | None = Field(None, description="seconds before it may run")
    run_at: RunAt | None = Field(None, description="not before this time (instead of delay)")
    unique_key: UniqueKey | None = Field(
        None, description="at most one unfinished job per key; a repeat returns that job"
    )
    concurrency_key: ConcurrencyKey | None = Field(
        None,
        description="e.g. a tenant: the queue's key_concurrency limits the jobs processing "
        "per key, and a fair queue rotates its claims across keys",
    )
    depends_on: list[DependencyRef] | None = Field(
        None,
        max_length=MAX_DEPENDENCIES,
        description='ids of existing jobs, or in a batch "@i" for item i (0-based) before '
        "this one: the job stays pending until they have finished",
    )
    on_dependency_failure: jobs.OnDependencyFailure | None = Field(
        None,
        description='"cancel" (default): a dependency that ends failed or cancelled cancels '
        'this job; "run": it runs once its dependencies have finished, whatever their status',
    )

    @model_validator(mode="after")
    def _delay_or_run_at(self) -> JobIn:
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give either delay or run_at, not both")
        return self

    def fields(self) -> dict[str, Any]:
        """The fields the caller gave, as keyword arguments of `Conveyor.build_job`."""
        return self.model_dump(exclude_unset=True)


class BatchIn(BaseModel):
    """POST /jobs/batch: all of these jobs are stored, or none."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobIn] = Field(description="jobs to enqueue, in order")


class JobOut(BaseModel):
    """A job as SPEC §1 describes it; timestamps are ISO 8601 with a timezone."""

    id: int
    type: str
    queue: str
    payload: Any
    priority: int
    status: jobs.JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    unique_key: str | None
    result: Any
    last_error: str | None
    worker: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: float | None = Field(description="0 to 1, as the running task last reported it")
    progress_message: str | None = Field(description="what the running task said it was doing")
    concurrency_key: str | None = Field(description="the key of key_concurrency and fair share")
    depends_on: list[int] = Field(description="the jobs it waits for (SPEC §8)")
    on_dependency_failure: jobs.OnDependencyFailure = Field(
        description="what a failed or cancelled dependency does to it"
    )


class JobsOut(BaseModel):
    jobs: list[JobOut]


class StartsOut(BaseModel):
    """When each attempt of a job started, oldest first: the last is its `started_at`; the
    store keeps the last 101."""

    starts: list[datetime]


# -- bulk actions (SPEC §8): POST /jobs/cancel, POST /jobs/retry ------------------------------
def _created_before(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("created_before must be an ISO 8601 timestamp string with a timezone")
    return parse_run_at(value, "created_before")


CreatedBefore = Annotated[
    datetime,
    PlainValidator(_created_before),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# `status` is checked by validation.bulk_filter (the one rule, with a message naming the
# statuses that apply); the schema documents exactly those.
CancelStatus = Annotated[
    str,
    Field(strict=True),
    WithJsonSchema({"type": "string", "enum": [s.value for s in jobs.CANCELLABLE]}),
]
RetryStatus = Annotated[
    str,
    Field(strict=True),
    WithJsonSchema({"type": "string", "enum": [s.value for s in jobs.RETRYABLE]}),
]


class _BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: QueueName | None = Field(None, description="only jobs of this queue")
    type: TypeName | None = Field(None, description="only jobs of this task type")
    created_before: CreatedBefore | None = Field(
        None, description="only jobs created before this time (ISO 8601, with a timezone)"
    )

    def filters(self) -> dict[str, Any]:
        """The body (status and filters) as keyword arguments of `Conveyor.cancel_jobs` /
        `retry_jobs`."""
        return self.model_dump()


class CancelIn(_BulkIn):
    """POST /jobs/cancel: the jobs to cancel. `status` is required, so that a mistyped
    request never cancels every job."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "pending", "queue": "mail"}]}
    )

    status: CancelStatus = Field(description="required: pending or processing")


class RetryIn(_BulkIn):
    """POST /jobs/retry: the jobs to retry. `status` is required, so that a mistyped request
    never retries every job."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "failed", "type": "payment"}]}
    )

    status: RetryStatus = Field(description="required: failed or cancelled")


class CountOut(BaseModel):
    count: int = Field(description="how many jobs the action changed")


class MetricsOut(BaseModel):
    """This process's counters since it started, and job counts read from the store."""

    processed: int
    failed: int
    retried: int
    recovered: int
    handed_back: int
    slots_total: int
    slots_busy: int
    queues: dict[str, dict[str, int]] = Field(description="{queue: {status: count}}")


class PeriodicOut(BaseModel):
    """One periodic job's schedule (SPEC §7); timestamps are ISO 8601 with a timezone."""

    name: str = Field(description="the schedule's name (the task's, unless given)")
    schedule: str = Field(description="cron expression: 5 fields, or 6 with the seconds first")
    timezone: str = Field(description="IANA time zone the ticks are computed in")
    active: bool | None = Field(
        description="registered by the served app; false: no longer (the row is kept); "
        "null: the served app registers no periodic jobs, so it cannot tell"
    )
    next_tick: datetime | None = Field(description="the next tick (null when inactive)")
    last_tick: datetime | None = Field(description="the latest tick enqueued")
    last_job_id: int | None = Field(description="the job of that tick")
    last_job_status: jobs.JobStatus | None = Field(
        description="that job's status; null once it was pruned"
    )
    updated_at: datetime | None = Field(description="when the row last changed")


class PeriodicListOut(BaseModel):
    periodic: list[PeriodicOut]


# -- queue settings (SPEC §7) -------------------------------------------------------------------
QueueLimit = Annotated[
    int,
    Field(strict=True, ge=1, le=jobs.QUEUE_LIMIT_MAX),
    BeforeValidator(_integral),
]


def _rate_limit(value: str) -> str:
    rate_limit(value)  # the one parser's verdict and message (InvalidJob is a ValueError)
    return value


RateLimitText = Annotated[
    StrictStr,
    AfterValidator(_rate_limit),
    # documents what the parser accepts, exactly
    Field(json_schema_extra={"pattern": RATE_LIMIT_PATTERN, "examples": ["10/s", "600/m"]}),
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # a setting not given is left as it is, not set to a default


class QueueSettingsIn(BaseModel):
    """PUT /queues/{name}: the settings to change; those not given are left as they are, and
    `null` clears a limit."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"concurrency": 2, "rate_limit": "10/s"}]},
    )

    concurrency: QueueLimit | None = Field(
        None,
        description="at most this many jobs of the queue processing at once, across all "
        "workers; null: no limit",
        json_schema_extra=_no_default,
    )
    rate_limit: RateLimitText | None = Field(
        None,
        description="at most N jobs of the queue started in any window of a second, minute "
        'or hour (a sliding window): "10/s", "600/m", "5000/h"; null (or "none"): no limit',
        json_schema_extra=_no_default,
    )
    key_concurrency: QueueLimit | None = Field(
        None,
        description="at most this many processing jobs per concurrency_key; jobs without a "
        "key are not limited by it; null: no limit",
        json_schema_extra=_no_default,
    )
    fair: StrictBool = Field(
        None,  # type: ignore[assignment]  # not given: unchanged; null is refused
        description="claims rotate across concurrency_keys, so a key with a large backlog "
        "does not hold back the others",
        json_schema_extra=_no_default,
    )

    def changes(self) -> dict[str, Any]:
        """The settings the caller gave, for `Conveyor.configure_queue`."""
        return self.model_dump(exclude_unset=True)


class QueueOut(BaseModel):
    """A queue's settings (SPEC §7); in GET /queues also its job counts by status."""

    name: str
    concurrency: int | None = Field(description="jobs processing at once; null: no limit")
    rate_limit: str | None = Field(description='jobs started per window, "10/s"; null: none')
    key_concurrency: int | None = Field(description="processing per concurrency_key; null: none")
    fair: bool = Field(description="claims rotate across concurrency_keys")
    paused: bool = Field(description="paused by an operator: no job of it starts until resumed")
    paused_until: datetime | None = Field(
        description="fleet-wide backoff (a task raised Snooze(queue=True)): no job of the "
        "queue starts before this time; null when none is running"
    )
    counts: dict[str, int] | None = Field(
        None, description="GET /queues only: the queue's jobs by status (non-zero counts)"
    )


class QueuesOut(BaseModel):
    queues: list[QueueOut]


# -- fleet observability (SPEC §9) -----------------------------------------------------------
class WorkerOut(BaseModel):
    """One live worker process from the store's registry; times are ISO 8601 (UTC)."""

    id: str = Field(description="the worker's name (host, pid and a random suffix)")
    host: str
    pid: int
    queues: list[str] | None = Field(description="the queues it claims from; null: every queue")
    slots: int = Field(description="jobs it runs at once")
    busy: int = Field(description="slots running a job at its last heartbeat")
    started_at: datetime
    last_heartbeat: datetime
    version: str = Field(description="Conveyor's version in that process")


class WorkersOut(BaseModel):
    workers: list[WorkerOut] = Field(
        description="live workers, by id: a worker that stopped leaves at once, one that "
        "vanished (killed, its machine lost) within about two lease periods"
    )


class MinuteOut(BaseModel):
    minute: datetime = Field(description="the minute's start (UTC)")
    finished: int = Field(description="jobs done in that minute")
    failed: int = Field(description="jobs failed for good in that minute")
    retried: int = Field(description="failed attempts that will be retried")


class PercentilesOut(BaseModel):
    p50: float | None = Field(description="seconds; null without any attempt")
    p95: float | None = Field(description="seconds; null without any attempt")


class FleetOut(BaseModel):
    live: int = Field(description="live worker processes")
    slots: int = Field(description="their slots in all")
    busy: int = Field(description="of which busy at their last heartbeat")


class OverviewOut(BaseModel):
    """The dashboard's overview, read from counts and per-minute aggregates kept in the
    store: its cost does not grow with the finished jobs the store holds."""

    queues: dict[str, dict[str, int]] = Field(
        description="{queue: {status: count}}, non-zero counts"
    )
    per_minute: list[MinuteOut] = Field(
        description="the last 60 minutes, all queues together, oldest first (the current "
        "minute last), minutes without any attempt at 0"
    )
    queue_wait: PercentilesOut = Field(
        description="run_at (enqueue or due time) to start, over attempts that ended in "
        "the last 5 minutes (from log-spaced buckets: within a bucket's width)"
    )
    run_time: PercentilesOut = Field(description="start to end of those attempts, likewise")
    workers: FleetOut
    generated_at: datetime


class StatusOut(BaseModel):
    status: str


class ErrorOut(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer with."""
    described = {
        401: "missing or wrong bearer token (when API_TOKEN is set)",
        403: "a state change sent by another site's page (Origin / Sec-Fetch-Site); "
        "allowed with a valid bearer token",
        404: "no job with that id",
        409: "the job's status does not allow this",
        413: "request body larger than MAX_BODY_BYTES",
        415: "a request body that is not JSON (Content-Type: application/json)",
        422: "invalid input: malformed JSON, wrong types, out-of-range values, unknown type",
        503: "the store is unreachable",
    }
    return {
        code: {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": described[code],
        }
        for code in codes
    }

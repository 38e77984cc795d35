"""The HTTP JSON contract (SPEC §4) as pydantic models.

Requests are strict (no "5" for 5, no unknown fields) and carry SPEC §1's ranges, so
OpenAPI documents them; the same values then go through `Conveyor.build_job`, so the
HTTP API accepts and refuses exactly what the CLI and the Python API do.
Responses are documentation: routes return `Job.to_json()` itself, the one JSON shape
the CLI prints too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from conveyor import jobs
from conveyor.validation import check_name


def _parse_run_at(value: object) -> datetime:
    """ISO 8601 text with a timezone → aware UTC datetime (same rule as the Python API)."""
    if not isinstance(value, str):
        raise ValueError("run_at must be an ISO 8601 timestamp string with a timezone")
    try:
        # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValueError(f"run_at is not an ISO 8601 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError("run_at must carry a timezone, e.g. 2030-01-01T12:00:00Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("run_at is out of range") from None


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
    PlainValidator(_parse_run_at),
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

# Ids are 64-bit in both stores; larger numbers are refused before they reach a driver.
ID_MAX = 2**63 - 1


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
    priority: Priority | None = Field(None, description="higher runs first; default 0")
    queue: QueueName | None = Field(None, description='default "default" (or the task\'s queue)')
    max_attempts: MaxAttempts | None = Field(None, description="default: the task's, else 5")
    delay: Delay | None = Field(None, description="seconds before it may run")
    run_at: RunAt | None = Field(None, description="not before this time (instead of delay)")
    unique_key: UniqueKey | None = Field(
        None, description="at most one unfinished job per key; a repeat returns that job"
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


class JobsOut(BaseModel):
    jobs: list[JobOut]


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

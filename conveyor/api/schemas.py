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
    WithJsonSchema,
    model_validator,
)

from conveyor import jobs
from conveyor.validation import check_name, parse_run_at


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

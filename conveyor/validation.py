"""Caller input → validated domain values, enforcing SPEC §1 ranges with one-line messages.

Every entry point (Python API, CLI, HTTP API) builds its jobs with `new_job` and its
listing filters with `job_filter`, and parses `run_at` with `parse_run_at`, so the same
input is accepted or refused the same way everywhere, and nothing invalid reaches a store.
The ranges themselves are defined once, in conveyor/jobs.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import jobs
from conveyor.errors import InvalidJob
from conveyor.jobs import JobFilter, JobStatus, NewJob
from conveyor.payloads import encode_payload

# The longest retention `prune` takes: 100 years of 365 days. Beyond any real retention,
# and `now` minus it stays far inside what Python's datetime and both stores' timestamps
# hold (PostgreSQL refused a cutoff before 4713 BC, Python's arithmetic overflowed past
# timedelta's 999999999 days): one answer on both stores.
MAX_RETENTION_DAYS = 36500
_STATUSES = ", ".join(s.value for s in JobStatus)


def check_name(value: object, field: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidJob(f"{field} must be a string")
    if not 1 <= len(value) <= max_len:
        raise InvalidJob(f"{field} must be 1 to {max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidJob(f"{field} must not contain NUL characters")
    if value.isascii():  # the common case, and C-fast; only other text can hold a surrogate
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJob(f"{field} is not valid unicode") from None
    return value


def job_filter(
    *,
    status: JobStatus | str | None = None,
    type: str | None = None,
    queue: str | None = None,
    before_id: int | None = None,
    limit: int = jobs.LIST_LIMIT_DEFAULT,
) -> JobFilter:
    """A listing filter whose values follow the rules of the fields they match (InvalidJob
    otherwise), so an unstorable value is an input error on every store, never a driver
    error. `status` may be a JobStatus or its value ("failed")."""
    if status is not None and not isinstance(status, JobStatus):
        try:
            status = JobStatus(status)
        except ValueError:
            raise InvalidJob(f"status must be one of {_STATUSES}") from None
    if type is not None:
        check_name(type, "type", jobs.NAME_MAX)
    if queue is not None:
        check_name(queue, "queue", jobs.NAME_MAX)
    if before_id is not None:
        _check_int(before_id, "before_id", 1, jobs.ID_MAX)
    _check_int(limit, "limit", 1, jobs.LIST_LIMIT_MAX)
    return JobFilter(status=status, type=type, queue=queue, before_id=before_id, limit=limit)


def absent_id(job_id: object) -> bool:
    """True for an integer no store can hold as an id (below 1, or beyond 64 bits): it
    names no job, on every store alike, without asking one (a driver would refuse it)."""
    return type(job_id) is int and not 1 <= job_id <= jobs.ID_MAX


def retention(older_than: timedelta) -> timedelta:
    """A prune age: from 0 to MAX_RETENTION_DAYS; InvalidJob otherwise."""
    if not isinstance(older_than, timedelta):
        raise InvalidJob("older_than must be a timedelta")
    if not timedelta(0) <= older_than <= timedelta(days=MAX_RETENTION_DAYS):
        raise InvalidJob(f"older_than must be between 0 and {MAX_RETENTION_DAYS} days (100 years)")
    return older_than


def _check_int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{field} must be an integer")
    if not low <= value <= high:
        raise InvalidJob(f"{field} must be between {low} and {high}, got {value}")
    return value


def parse_run_at(value: object) -> datetime:
    """`run_at` as an aware UTC datetime, from a datetime with a timezone or ISO 8601 text
    with one (RFC 3339's lowercase "t" and "z" too: `2030-01-01t12:00:00z`); InvalidJob
    otherwise. The one parser of every entry point (Python API, CLI, HTTP schemas)."""
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.upper())  # fromisoformat wants "T" and "Z"
        except ValueError:
            raise InvalidJob(f"run_at is not an ISO 8601 timestamp: {text[:40]!r}") from None
    if not isinstance(value, datetime):
        raise InvalidJob("run_at must be an ISO 8601 timestamp (or a datetime) with a timezone")
    if value.tzinfo is None:
        raise InvalidJob("run_at must carry a timezone, e.g. 2030-01-01T12:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidJob("run_at is out of range") from None


def resolve_run_at(delay: float | None, run_at: datetime | str | None) -> datetime | None:
    """When the job may run: None means 'now by the store's clock'."""
    if delay is not None and run_at is not None:
        raise InvalidJob("give either delay or run_at, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise InvalidJob("delay must be a number of seconds")
        if not 0 <= delay <= jobs.DELAY_MAX_SECONDS:
            raise InvalidJob(f"delay must be between 0 and {jobs.DELAY_MAX_SECONDS} seconds")
        return None if delay == 0 else jobs.utcnow() + timedelta(seconds=delay)
    return None if run_at is None else parse_run_at(run_at)


def new_job(
    type: str,
    payload: object = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    delay: float | None = None,
    run_at: datetime | str | None = None,
    unique_key: str | None = None,
    default_max_attempts: int = jobs.DEFAULT_MAX_ATTEMPTS,
) -> NewJob:
    """Validate one job's fields and encode its payload; raises InvalidJob."""
    return NewJob(
        type=check_name(type, "type", jobs.NAME_MAX),
        payload_json=encode_payload(payload),
        queue=check_name(jobs.DEFAULT_QUEUE if queue is None else queue, "queue", jobs.NAME_MAX),
        priority=_check_int(
            jobs.DEFAULT_PRIORITY if priority is None else priority,
            "priority",
            jobs.PRIORITY_MIN,
            jobs.PRIORITY_MAX,
        ),
        max_attempts=_check_int(
            default_max_attempts if max_attempts is None else max_attempts,
            "max_attempts",
            jobs.MAX_ATTEMPTS_MIN,
            jobs.MAX_ATTEMPTS_MAX,
        ),
        run_at=resolve_run_at(delay, run_at),
        unique_key=None
        if unique_key is None
        else check_name(unique_key, "unique_key", jobs.UNIQUE_KEY_MAX),
    )

"""Build a NewJob from caller input, enforcing SPEC §1 ranges with one-line messages.

Every entry point (Python API, CLI, HTTP API) goes through `new_job`, so the same
input is accepted or refused the same way everywhere, and nothing invalid reaches a store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import jobs
from conveyor.errors import InvalidJob
from conveyor.jobs import NewJob
from conveyor.payloads import encode_payload


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


ID_MAX = 2**63 - 1


def check_filter(*, type: str | None, queue: str | None, before_id: int | None, limit: int) -> None:
    """Listing filters follow the same rules as the fields they match; InvalidJob otherwise."""
    if type is not None:
        check_name(type, "type", jobs.NAME_MAX)
    if queue is not None:
        check_name(queue, "queue", jobs.NAME_MAX)
    if before_id is not None:
        _check_int(before_id, "before_id", 1, ID_MAX)
    _check_int(limit, "limit", 1, 1000)


def _check_int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{field} must be an integer")
    if not low <= value <= high:
        raise InvalidJob(f"{field} must be between {low} and {high}, got {value}")
    return value


def resolve_run_at(delay: float | None, run_at: datetime | str | None) -> datetime | None:
    """None means 'now by the store's clock'. run_at may be ISO 8601 text with a timezone."""
    if delay is not None and run_at is not None:
        raise InvalidJob("give either delay or run_at, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise InvalidJob("delay must be a number of seconds")
        if not 0 <= delay <= jobs.DELAY_MAX_SECONDS:
            raise InvalidJob(f"delay must be between 0 and {jobs.DELAY_MAX_SECONDS} seconds")
        return None if delay == 0 else jobs.utcnow() + timedelta(seconds=delay)
    if isinstance(run_at, str):
        text = run_at
        try:
            run_at = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidJob(f"run_at is not an ISO 8601 timestamp: {text[:40]!r}") from None
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidJob("run_at must be a datetime")
        if run_at.tzinfo is None:
            raise InvalidJob("run_at must carry a timezone")
        try:
            return run_at.astimezone(UTC)
        except OverflowError:
            raise InvalidJob("run_at is out of range") from None
    return None


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
    default_max_attempts: int = 5,
) -> NewJob:
    """Validate one job's fields and encode its payload; raises InvalidJob."""
    return NewJob(
        type=check_name(type, "type", jobs.NAME_MAX),
        payload_json=encode_payload(payload),
        queue=check_name(jobs.DEFAULT_QUEUE if queue is None else queue, "queue", jobs.NAME_MAX),
        priority=_check_int(
            0 if priority is None else priority, "priority", jobs.PRIORITY_MIN, jobs.PRIORITY_MAX
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

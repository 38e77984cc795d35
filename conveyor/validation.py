"""Caller input → validated domain values, enforcing SPEC §1 ranges with one-line messages.

Every entry point (Python API, CLI, HTTP API) builds its jobs with `new_job` and its
listing filters with `job_filter`, and parses `run_at` with `parse_run_at`, so the same
input is accepted or refused the same way everywhere, and nothing invalid reaches a store.
The ranges themselves are defined once, in conveyor/jobs.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, TypedDict

from conveyor import jobs
from conveyor.dependencies import MAX_DEPENDENCIES
from conveyor.errors import ConveyorError, InvalidJob
from conveyor.jobs import BulkFilter, JobFilter, JobStatus, NewJob
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


def bulk_filter(
    action: Literal["cancel", "retry"],
    *,
    status: JobStatus | str | None,
    queue: str | None = None,
    type: str | None = None,
    created_before: datetime | str | None = None,
) -> BulkFilter:
    """The jobs a bulk `action` applies to (SPEC §8), checked: `status` is required and must
    be one the action moves jobs from (cancel: pending or processing; retry: failed or
    cancelled); `queue` and `type` follow the rules of the fields they match;
    `created_before` is a datetime with a timezone or ISO 8601 text. InvalidJob otherwise,
    naming the statuses that apply."""
    applies = jobs.CANCELLABLE if action == "cancel" else jobs.RETRYABLE
    names = " or ".join(s.value for s in applies)
    if status is None:
        raise InvalidJob(f"status is required: {action} applies to {names} jobs")
    if not isinstance(status, JobStatus):
        try:
            status = JobStatus(status)
        except ValueError:
            raise InvalidJob(
                f"status must be one of {_STATUSES} ({action} applies to {names} jobs)"
            ) from None
    if status not in applies:
        raise InvalidJob(f"{action} applies to {names} jobs, not {status.value} ones")
    if type is not None:
        check_name(type, "type", jobs.NAME_MAX)
    if queue is not None:
        check_name(queue, "queue", jobs.NAME_MAX)
    before = None if created_before is None else parse_run_at(created_before, "created_before")
    return BulkFilter(status=status, queue=queue, type=type, created_before=before)


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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SECONDS = MAX_RETENTION_DAYS * 86400
# What a retention option (SPEC §7) says to keep a status's finished jobs for ever.
FOREVER = "forever"


def parse_duration(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` or plain seconds, from 0 to 36500d (100 years): the
    format of `conveyor prune --older-than` and of the retention options."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ConveyorError(f"bad duration {text!r}: use e.g. 7d, 12h, 30m or 45s")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not seconds <= _MAX_SECONDS:  # also inf, from a number of 309 digits or more
        raise ConveyorError(
            f"duration {text.strip()!r} is out of range: at most {MAX_RETENTION_DAYS}d (100 years)"
        )
    return timedelta(seconds=seconds)


def parse_retention(text: str) -> timedelta | None:
    """A retention option (`--retain-done 1d`, SPEC §7): how long finished jobs of a status
    are kept, in parse_duration's format, or None to keep them for ever: `forever`, and any
    zero duration (`0`, `0s`, `0d`), since SPEC §7 says `0` keeps them (a zero that meant
    "delete at once" would be one keystroke from "never delete")."""
    if text.strip().lower() == FOREVER:
        return None
    age = parse_duration(text)
    return age if age > timedelta(0) else None


def _check_int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{field} must be an integer")
    if not low <= value <= high:
        raise InvalidJob(f"{field} must be between {low} and {high}, got {value}")
    return value


def parse_run_at(value: object, field: str = "run_at") -> datetime:
    """`run_at` as an aware UTC datetime, from a datetime with a timezone or ISO 8601 text
    with one (RFC 3339's lowercase "t" and "z" too: `2030-01-01t12:00:00z`); InvalidJob
    otherwise. The one parser of every entry point (Python API, CLI, HTTP schemas), also of
    other timestamps (`field` names the value in messages: `created_before`)."""
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.upper())  # fromisoformat wants "T" and "Z"
        except ValueError:
            raise InvalidJob(f"{field} is not an ISO 8601 timestamp: {text[:40]!r}") from None
    if not isinstance(value, datetime):
        raise InvalidJob(f"{field} must be an ISO 8601 timestamp (or a datetime) with a timezone")
    if value.tzinfo is None:
        raise InvalidJob(f"{field} must carry a timezone, e.g. 2030-01-01T12:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidJob(f"{field} is out of range") from None


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
    concurrency_key: str | None = None,
    depends_on: object = None,
    on_dependency_failure: object = None,
    batch_index: int | None = None,
) -> NewJob:
    """Validate one job's fields and encode its payload; raises InvalidJob. `batch_index` is
    the job's place in an enqueue_many batch, where depends_on may name earlier items."""
    ids, items = dependencies(depends_on, batch_index)
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
        concurrency_key=None
        if concurrency_key is None
        else check_name(concurrency_key, "concurrency_key", jobs.CONCURRENCY_KEY_MAX),
        depends_on=ids,
        depends_on_items=items,
        on_dependency_failure=dependency_policy(on_dependency_failure),
    )


# -- dependencies (SPEC §8) ------------------------------------------------------------------
_ITEM_REF = re.compile(r"@(0|[1-9][0-9]{0,8})")
_POLICY_VALUES = frozenset(p.value for p in jobs.OnDependencyFailure)
_POLICIES = " or ".join(f'"{p.value}"' for p in jobs.OnDependencyFailure)


def dependencies(value: object, batch_index: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """depends_on → (job ids, earlier batch positions), each sorted and without repeats.
    A job can depend only on jobs that exist or on earlier items of its batch, so no cycle
    can form; whether the ids exist is the store's to check, under lock."""
    if value is None:
        return (), ()
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise InvalidJob("depends_on must be a list of job ids")
    if len(value) > MAX_DEPENDENCIES:
        raise InvalidJob(f"depends_on may name at most {MAX_DEPENDENCIES} jobs")
    ids: set[int] = set()
    items: set[int] = set()
    for ref in value:
        if isinstance(ref, str):
            match = _ITEM_REF.fullmatch(ref)
            if batch_index is None:
                raise InvalidJob(
                    f'depends_on: "{ref[:20]}" is not a job id ("@i" references belong to a batch)'
                )
            if match is None or int(match[1]) >= batch_index:
                raise InvalidJob(
                    f'depends_on: "{ref[:20]}" must be "@i" naming an earlier item of the batch'
                    f" (0 to {batch_index - 1})"
                    if batch_index
                    else f'depends_on: "{ref[:20]}": the first item of a batch has no earlier item'
                )
            items.add(int(match[1]))
        elif isinstance(ref, bool) or not isinstance(ref, int):
            raise InvalidJob("depends_on must be a list of job ids")
        elif not 1 <= ref <= jobs.ID_MAX:
            raise InvalidJob(f"depends_on: no job {str(ref)[:30]}")
        else:
            ids.add(ref)
    return tuple(sorted(ids)), tuple(sorted(items))


def dependency_policy(value: object) -> jobs.OnDependencyFailure:
    if value is None:
        return jobs.OnDependencyFailure.CANCEL
    if isinstance(value, str) and value in _POLICY_VALUES:
        return jobs.OnDependencyFailure(value)
    raise InvalidJob(f"on_dependency_failure must be {_POLICIES}")


# -- queue settings (SPEC §7) -------------------------------------------------------------------
# The one parser of queue settings for every entry point: `Conveyor.configure_queue`, `conveyor
# queues set` (whose options arrive as text: "5", "none", "10/s") and PUT /queues/{name}.
NO_LIMIT = "none"  # what clears a limit, besides None
_RATE = "([1-9][0-9]{0,8})/([smh])"  # N from 1 to 999,999,999 (jobs.QUEUE_LIMIT_MAX)
# What rate_limit accepts as text, exactly (the HTTP schema documents it)
RATE_LIMIT_PATTERN = f"^({NO_LIMIT}|{_RATE})$"
_DIGITS = re.compile("[0-9]{1,12}")
_RATE_FORMS = "N/s, N/m or N/h with N from 1, e.g. 10/s"


def queue_name(value: object) -> str:
    """A queue's name: the rules of a job's `queue`."""
    return check_name(value, "queue", jobs.NAME_MAX)


def queue_limit(value: object, field: str) -> int | None:
    """`concurrency` / `key_concurrency`: an integer from 1, or None or "none" for no limit
    (the text of an integer too, as the CLI passes it); InvalidJob otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == NO_LIMIT:
            return None
        if not _DIGITS.fullmatch(text):
            raise InvalidJob(f"{field} must be an integer of at least 1, or {NO_LIMIT}")
        value = int(text)
    return _check_int(value, field, 1, jobs.QUEUE_LIMIT_MAX)


def rate_limit(value: object) -> jobs.RateLimit | None:
    """`rate_limit`: text `N/s`, `N/m` or `N/h` (N from 1), a RateLimit, or None or "none" for
    no limit; InvalidJob otherwise."""
    if value is None:
        return None
    if isinstance(value, jobs.RateLimit):
        count, period = value.count, value.period
        if period not in jobs.RATE_PERIODS.values():
            raise InvalidJob("rate_limit's period must be 1, 60 or 3600 seconds")
    elif isinstance(value, str):
        if value == NO_LIMIT:
            return None
        match = re.fullmatch(_RATE, value)
        if match is None:
            raise InvalidJob(
                f"rate_limit must be {_RATE_FORMS} (or {NO_LIMIT}), got {value[:40]!r}"
            )
        count, period = int(match.group(1)), jobs.RATE_PERIODS[match.group(2)]
    else:
        raise InvalidJob(f"rate_limit must be text ({_RATE_FORMS}) or None")
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidJob("rate_limit's count must be an integer")
    if not 1 <= count <= jobs.QUEUE_LIMIT_MAX:
        raise InvalidJob(f"rate_limit's count must be between 1 and {jobs.QUEUE_LIMIT_MAX}")
    return jobs.RateLimit(count, period)


def queue_changes(changes: Mapping[str, object]) -> jobs.QueueChanges:
    """The given queue settings, checked (only those given; None or "none" clears a limit).
    An unknown setting is a TypeError, like an unknown keyword argument; a bad value is
    InvalidJob."""
    unknown = sorted(set(changes) - set(jobs.QUEUE_SETTINGS))
    if unknown:
        settings = ", ".join(jobs.QUEUE_SETTINGS)
        raise TypeError(f"unknown queue setting {unknown[0]!r}; the settings are {settings}")
    out = jobs.QueueChanges()
    if "concurrency" in changes:
        out["concurrency"] = queue_limit(changes["concurrency"], "concurrency")
    if "rate_limit" in changes:
        out["rate_limit"] = rate_limit(changes["rate_limit"])
    if "key_concurrency" in changes:
        out["key_concurrency"] = queue_limit(changes["key_concurrency"], "key_concurrency")
    if "fair" in changes:
        if not isinstance(changes["fair"], bool):
            raise InvalidJob("fair must be true or false")
        out["fair"] = changes["fair"]
    return out


def hold_until(value: object) -> datetime:
    """The end of a queue's fleet-wide backoff: an aware datetime (as `parse_run_at`)."""
    if not isinstance(value, datetime):
        raise InvalidJob("paused_until must be a datetime with a timezone")
    return parse_run_at(value)


class QueueOptions(TypedDict, total=False):
    """What `Conveyor.configure_queue` takes, before `queue_changes` checks it."""

    concurrency: int | str | None
    rate_limit: str | jobs.RateLimit | None
    key_concurrency: int | str | None
    fair: bool

"""Periodic jobs (SPEC §7), the pure part: cron schedules in a time zone, the definitions an
app registers, and the rows the store keeps. No I/O; the scheduler (worker/scheduler.py)
and the store's compare-and-set (`Store.enqueue_periodic`) do the rest.

Cron expressions are parsed and evaluated by cronsim (the parser healthchecks.io runs), never
here: 5 fields as in crontab, or 6 with the seconds FIRST (`*/10 * * * * *`: every ten
seconds). Ticks are computed in the schedule's time zone (zoneinfo) and handled as UTC.

Daylight saving time is cronsim's, which follows Debian's cron (tests/unit/test_periodic.py):
- a 5-field schedule at a fixed local time (neither minute nor hour starts with `*`), e.g.
  `30 2 * * *`: a time skipped when clocks go forward runs once, at the first moment after
  the gap (03:00 local); a time that happens twice when clocks go back runs once, at its
  first occurrence;
- schedules that run every hour or more often (`*/15 * * * *`) and 6-field schedules follow
  real time: a skipped local time has no tick, a repeated local time ticks twice (once per
  occurrence: they are different instants, so different keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor import jobs
from conveyor.errors import InvalidJob
from conveyor.jobs import JobStatus, JSONValue, NewJob
from conveyor.validation import check_name

DEFAULT_TIMEZONE = "UTC"
KEY_PREFIX = "periodic"
# "periodic:" + name + ":" + a 25-character tick must fit in a unique_key (255 characters)
NAME_MAX = jobs.NAME_MAX


def unique_key(name: str, tick: datetime) -> str:
    """`periodic:<name>:<tick in ISO 8601 UTC>`, the unique_key of a tick's job (SPEC §7)."""
    return f"{KEY_PREFIX}:{name}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression in a time zone; its ticks are aware UTC datetimes, whole seconds."""

    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: str, timezone: str = DEFAULT_TIMEZONE) -> Schedule:
        """InvalidJob for an expression cronsim refuses or a time zone zoneinfo lacks."""
        if not isinstance(expression, str) or len(expression.split()) not in (5, 6):
            raise InvalidJob(
                f"schedule {expression!r} must be a cron expression of 5 fields "
                "(minute hour day month weekday) or 6 (seconds first)"
            )
        check_name(timezone, "timezone", NAME_MAX)
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidJob(
                f"unknown time zone {timezone!r} (an IANA name, e.g. Europe/Berlin)"
            ) from None
        expression = " ".join(expression.split())
        try:
            CronSim(expression, datetime.now(zone))
        except CronSimError as exc:
            raise InvalidJob(
                f"schedule {expression!r} is not a valid cron expression: {exc}"
            ) from None
        return cls(expression, timezone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # cached by zoneinfo

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after `moment`; None when there is none within 50 years."""
        it = CronSim(self.expression, moment.astimezone(self.zone))
        try:
            return next(it).astimezone(UTC)
        except StopIteration:
            return None

    def ticks(self, after: datetime | None, until: datetime, *, limit: int) -> list[datetime]:
        """The most recent ticks in (`after`, `until`], at most `limit`, oldest first
        (`after` None: no lower bound)."""
        # Backwards from the last whole second up to `until`: cronsim's reverse iteration
        # starts strictly before a whole-second moment.
        start = until.replace(microsecond=0) + timedelta(seconds=1)
        it = CronSim(self.expression, start.astimezone(self.zone), reverse=True)
        found: list[datetime] = []
        while len(found) < limit:
            try:
                tick = next(it).astimezone(UTC)
            except StopIteration:
                break
            if after is not None and tick <= after:
                break
            found.append(tick)
        found.reverse()
        return found


@dataclass(frozen=True, slots=True)
class Periodic:
    """A periodic job an app registered: schedule `name` enqueues `job` at every tick."""

    name: str
    schedule: Schedule
    job: NewJob  # type, payload, queue, priority, max_attempts; no run_at nor unique_key

    def job_for(self, tick: datetime) -> NewJob:
        """The job of one tick: runnable at the tick, keyed by schedule and tick."""
        return NewJob(
            self.job.type,
            self.job.payload_json,
            self.job.queue,
            self.job.priority,
            self.job.max_attempts,
            run_at=tick,
            unique_key=unique_key(self.name, tick),
        )


def check_periodic_name(name: object) -> str:
    return check_name(name, "periodic name", NAME_MAX)


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """A periodic job as `app.periodic(...)` was given it; the app builds its job (with the
    task's own defaults and signature check) when its workers start, since the task may be
    registered after the schedule."""

    name: str
    schedule: Schedule
    type: str
    payload: object
    queue: str | None
    priority: int | None
    max_attempts: int | None


@dataclass(frozen=True, slots=True)
class PeriodicState:
    """A row of the store's `periodic` table, with the status of its last job (None once that
    job is pruned). `since`: ticks before it are never enqueued (when the schedule was first
    registered, or last changed)."""

    name: str
    schedule: str
    timezone: str
    since: datetime
    last_tick: datetime | None
    last_job_id: int | None
    last_job_status: JobStatus | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PeriodicListing:
    """What `conveyor periodic list` and GET /periodic show of one schedule. `active`: True
    when the listing app registers it, False when that app registers other periodic jobs but
    not this one (removed from the code; its row is kept), None when the app registers none
    (the CLI without --app): it cannot tell. `state` is None for a schedule no worker has
    registered in the store yet."""

    name: str
    schedule: str
    timezone: str
    active: bool | None
    next_tick: datetime | None
    state: PeriodicState | None

    def to_json(self) -> dict[str, JSONValue]:
        state = self.state
        return {
            "name": self.name,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "active": self.active,
            "next_tick": _iso(self.next_tick),
            "last_tick": _iso(state.last_tick if state else None),
            "last_job_id": state.last_job_id if state else None,
            "last_job_status": (
                state.last_job_status.value if state and state.last_job_status else None
            ),
            "updated_at": _iso(state.updated_at if state else None),
        }


def listings(
    rows: list[PeriodicState], registered: Mapping[str, Schedule], now: datetime
) -> list[PeriodicListing]:
    """The store's rows and the app's registered schedules, by name: the next tick from the
    app's own schedule when it registers the name, from the stored one when it cannot tell,
    none for a schedule the app no longer registers."""
    by_name = {row.name: row for row in rows}
    out = []
    for name in sorted(by_name.keys() | registered.keys()):
        row, own = by_name.get(name), registered.get(name)
        active = (name in registered) if registered else None
        if own is not None:
            schedule = own
        else:
            assert row is not None
            schedule = Schedule(row.schedule, row.timezone)
        next_tick = None if active is False else _next_or_none(schedule, now)
        out.append(
            PeriodicListing(name, schedule.expression, schedule.timezone, active, next_tick, row)
        )
    return out


def _next_or_none(schedule: Schedule, now: datetime) -> datetime | None:
    try:
        return schedule.next_after(now)
    except (CronSimError, ZoneInfoNotFoundError, ValueError):  # a row written by other code
        return None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()

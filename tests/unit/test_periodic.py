"""Periodic jobs, the pure part: cron schedules (cronsim) in a time zone, their ticks across
daylight saving time, the tick's unique_key, and what `app.periodic` registers."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidJob, UnknownTask
from conveyor.jobs import JobStatus
from conveyor.periodic import PeriodicState, Schedule, listings, unique_key

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def following(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    ticks, moment = [], start
    for _ in range(n):
        tick = schedule.next_after(moment)
        assert tick is not None
        ticks.append(tick)
        moment = tick
    return ticks


# -- parsing -----------------------------------------------------------------------------------
def test_five_fields_tick_on_the_minute():
    schedule = Schedule.parse("*/5 * * * *")
    assert following(schedule, utc(2024, 1, 1, 12, 1, 30), 2) == [
        utc(2024, 1, 1, 12, 5),
        utc(2024, 1, 1, 12, 10),
    ]


def test_six_fields_put_the_seconds_first():
    schedule = Schedule.parse("*/20 * * * * *")
    assert following(schedule, utc(2024, 1, 1, 12, 0, 1), 3) == [
        utc(2024, 1, 1, 12, 0, 20),
        utc(2024, 1, 1, 12, 0, 40),
        utc(2024, 1, 1, 12, 1, 0),
    ]
    # "30 0 * * * *" is second 30 of minute 0 of every hour, not minute 30
    assert Schedule.parse("30 0 * * * *").next_after(utc(2024, 1, 1, 12, 5)) == utc(
        2024, 1, 1, 13, 0, 30
    )


def test_ticks_are_utc_and_computed_in_the_time_zone():
    schedule = Schedule.parse("0 3 * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2024, 1, 10, 12)) == utc(2024, 1, 11, 2)  # CET, UTC+1
    assert schedule.next_after(utc(2024, 7, 10, 12)) == utc(2024, 7, 11, 1)  # CEST, UTC+2


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "* * * * * * *", "61 * * * *", "* * * * * 99", "nonsense", "", "0 0 30 2 *"],
)
def test_bad_expressions_are_refused(expression):
    with pytest.raises(InvalidJob):
        Schedule.parse(expression)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "UTC\x00"])
def test_unknown_time_zones_are_refused(zone):
    with pytest.raises(InvalidJob):
        Schedule.parse("* * * * *", zone)


def test_ticks_lists_the_most_recent_ones_oldest_first():
    schedule = Schedule.parse("* * * * * *")
    now = utc(2024, 1, 1, 12, 0, 10, 500_000)
    assert schedule.ticks(None, now, limit=1) == [utc(2024, 1, 1, 12, 0, 10)]
    assert schedule.ticks(utc(2024, 1, 1, 12, 0, 7), now, limit=10) == [
        utc(2024, 1, 1, 12, 0, 8),
        utc(2024, 1, 1, 12, 0, 9),
        utc(2024, 1, 1, 12, 0, 10),
    ]
    assert schedule.ticks(utc(2024, 1, 1, 11), now, limit=2) == [
        utc(2024, 1, 1, 12, 0, 9),
        utc(2024, 1, 1, 12, 0, 10),
    ]
    # a tick at exactly `until` is due; one after it is not
    assert schedule.ticks(None, utc(2024, 1, 1, 12, 0, 10), limit=1) == [utc(2024, 1, 1, 12, 0, 10)]
    assert schedule.ticks(utc(2024, 1, 1, 12, 0, 10), now, limit=5) == []


def test_unique_key_is_the_name_and_the_tick_in_iso_8601_utc():
    tick = local(2024, 3, 1, 3, 0)
    assert unique_key("nightly-export", tick) == "periodic:nightly-export:2024-03-01T02:00:00+00:00"


# -- daylight saving time (cronsim follows Debian's cron) --------------------------------------
# Europe/Berlin: 2024-03-31 02:00 CET → 03:00 CEST (02:xx does not exist);
#                2024-10-27 03:00 CEST → 02:00 CET (02:xx happens twice).
def test_a_fixed_time_skipped_by_the_clocks_going_forward_runs_once_right_after_the_gap():
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert following(schedule, local(2024, 3, 30, 12), 2) == [
        local(2024, 3, 31, 3, 0).astimezone(UTC),  # the first moment after the gap
        local(2024, 4, 1, 2, 30).astimezone(UTC),
    ]
    # walking backwards finds the same tick: the scheduler's "latest due tick" agrees
    assert schedule.ticks(None, local(2024, 3, 31, 12), limit=1) == [utc(2024, 3, 31, 1)]


def test_a_fixed_time_repeated_by_the_clocks_going_back_runs_once_at_its_first_occurrence():
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert following(schedule, local(2024, 10, 26, 12), 2) == [
        local(2024, 10, 27, 2, 30, fold=0).astimezone(UTC),  # CEST: 00:30 UTC
        local(2024, 10, 28, 2, 30).astimezone(UTC),
    ]
    assert schedule.ticks(None, local(2024, 10, 27, 12), limit=1) == [utc(2024, 10, 27, 0, 30)]


def test_frequent_schedules_follow_real_time_across_the_changes():
    schedule = Schedule.parse("*/30 * * * *", "Europe/Berlin")
    spring = following(schedule, local(2024, 3, 31, 1, 15), 3)
    assert spring == [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 30)]
    # local 01:30 CET, 03:00 CEST, 03:30 CEST: the skipped hour has no ticks
    fall = following(schedule, local(2024, 10, 27, 1, 45), 5)
    assert fall == [
        utc(2024, 10, 27, 0, 0),  # 02:00 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 1, 0),  # 02:00 CET: the repeated hour ticks again
        utc(2024, 10, 27, 1, 30),  # 02:30 CET
        utc(2024, 10, 27, 2, 0),  # 03:00 CET
    ]
    assert len({unique_key("x", t) for t in fall}) == 5, "each occurrence has its own key"


def test_six_field_schedules_follow_real_time_too():
    schedule = Schedule.parse("0 30 2 * * *", "Europe/Berlin")
    # skipped on the day the clocks go forward, twice on the day they go back
    assert following(schedule, local(2024, 3, 30, 12), 1) == [local(2024, 4, 1, 2, 30)]
    assert following(schedule, local(2024, 10, 26, 12), 2) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 27, 1, 30),
    ]


# -- app.periodic ------------------------------------------------------------------------------
def test_the_decorator_registers_a_task_and_its_schedule():
    app = Conveyor("sqlite:///unused.db")

    @app.periodic("*/5 * * * *", timezone="Europe/Berlin")
    def refresh_rates() -> None: ...

    assert app.tasks["refresh_rates"] is refresh_rates
    (periodic,) = app.periodic_jobs().values()
    assert (periodic.name, periodic.schedule.expression, periodic.schedule.timezone) == (
        "refresh_rates",
        "*/5 * * * *",
        "Europe/Berlin",
    )
    assert (periodic.job.type, periodic.job.payload_json) == ("refresh_rates", "null")


def test_a_task_by_name_with_a_payload_and_its_own_options():
    app = Conveyor("sqlite:///unused.db")

    @app.task(queue="reports", priority=2)
    def export(report_id: int) -> None: ...

    app.periodic("0 3 * * *", task="export", payload={"report_id": 7}, name="nightly-export")
    job = app.periodic_jobs()["nightly-export"].job
    assert (job.type, job.payload_json, job.queue, job.priority) == (
        "export",
        '{"report_id":7}',
        "reports",
        2,
    )


def test_the_decorator_takes_a_task_too():
    app = Conveyor("sqlite:///unused.db")

    @app.periodic("0 * * * *", name="hourly")
    @app.task(queue="q")
    def work() -> None: ...

    assert app.periodic_jobs()["hourly"].job.queue == "q"


def test_a_payload_the_task_refuses_is_refused_at_registration():
    app = Conveyor("sqlite:///unused.db")

    @app.task
    def export(report_id: int) -> None: ...

    with pytest.raises(InvalidJob, match="report_id"):
        app.periodic("0 3 * * *", task="export", payload={"report": 7})
    with pytest.raises(InvalidJob, match="report_id"):
        app.periodic("0 3 * * *", task="export")  # no payload: a missing argument


def test_a_task_registered_later_is_checked_when_the_jobs_are_built():
    app = Conveyor("sqlite:///unused.db")

    @app.task
    def other() -> None: ...

    app.periodic("0 3 * * *", task="export", payload={"report": 7})  # export: not yet known
    with pytest.raises(UnknownTask, match="periodic job 'export'"):
        app.periodic_jobs()

    @app.task
    def export(report_id: int) -> None: ...

    with pytest.raises(InvalidJob, match="periodic job 'export'.*report_id"):
        app.periodic_jobs()


def test_a_name_used_twice_a_bad_schedule_or_name_is_refused():
    app = Conveyor("sqlite:///unused.db")
    app.periodic("* * * * *", task="t")
    with pytest.raises(InvalidJob, match="twice"):
        app.periodic("0 * * * *", task="t")
    with pytest.raises(InvalidJob):
        app.periodic("every minute", task="u")
    with pytest.raises(InvalidJob):
        app.periodic("* * * * *", task="u", name="x" * 201)
    with pytest.raises(InvalidJob):
        app.periodic("* * * * *", task="u", timezone="Nowhere/Land")


# -- listings ----------------------------------------------------------------------------------
def _row(name: str, schedule: str = "0 * * * *") -> PeriodicState:
    at = utc(2024, 1, 1)
    return PeriodicState(name, schedule, "UTC", at, at, 7, JobStatus.DONE, at)


def test_listings_join_the_store_and_the_app():
    now = utc(2024, 1, 1, 12, 30)
    registered = {"kept": Schedule.parse("*/10 * * * *"), "new": Schedule.parse("0 0 * * *")}
    listed = listings([_row("kept"), _row("removed")], registered, now)
    by_name = {item.name: item for item in listed}
    assert [item.name for item in listed] == ["kept", "new", "removed"]
    # the app's own schedule wins over the stored one
    assert (by_name["kept"].active, by_name["kept"].schedule) == (True, "*/10 * * * *")
    assert by_name["kept"].next_tick == utc(2024, 1, 1, 12, 40)
    assert by_name["new"].state is None and by_name["new"].next_tick == utc(2024, 1, 2)
    assert (by_name["removed"].active, by_name["removed"].next_tick) == (False, None)
    assert by_name["removed"].to_json()["last_job_id"] == 7


def test_listings_without_registered_schedules_cannot_tell_what_is_active():
    now = utc(2024, 1, 1, 12, 30)
    (item,) = listings([_row("any")], {}, now)
    assert item.active is None and item.next_tick == utc(2024, 1, 1, 13)
    assert item.to_json() == {
        "name": "any",
        "schedule": "0 * * * *",
        "timezone": "UTC",
        "active": None,
        "next_tick": "2024-01-01T13:00:00+00:00",
        "last_tick": "2024-01-01T00:00:00+00:00",
        "last_job_id": 7,
        "last_job_status": "done",
        "updated_at": "2024-01-01T00:00:00+00:00",
    }


def test_a_stored_schedule_that_this_code_cannot_read_has_no_next_tick():
    (item,) = listings([_row("odd", "0 0 31 2 *")], {}, utc(2024, 1, 1))
    assert item.next_tick is None

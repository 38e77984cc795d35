"""`conveyor periodic list`: the schedules of periodic jobs (SPEC §7)."""

from __future__ import annotations

from datetime import datetime

import typer

from conveyor.cli import options as opt
from conveyor.cli.output import print_json, print_table
from conveyor.cli.run import settings_from
from conveyor.periodic import PeriodicListing
from conveyor.process import prepare_app

periodic_cli = typer.Typer(
    help="Periodic jobs: schedules, next ticks, last jobs.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(cli: typer.Typer) -> None:
    cli.add_typer(periodic_cli, name="periodic")


@periodic_cli.command("list")
def list_periodic(
    as_json: opt.Json = False, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None
) -> None:
    """Every schedule in the store and in the app: schedule, time zone, next tick, the last
    tick enqueued and its job. With --app, a schedule the app no longer registers is listed
    as inactive (its row is kept); without, the store's rows are all it knows ("active" ?)."""
    conveyor = prepare_app(settings_from(database_url=database_url, app=app), create_schema=False)
    try:
        listed = conveyor.list_periodic()
    finally:
        conveyor.close()
    if as_json:
        print_json({"periodic": [item.to_json() for item in listed]})
    else:
        print_listings(listed)


def print_listings(listed: list[PeriodicListing]) -> None:
    if not listed:
        typer.echo("no periodic jobs")
        return
    print_table(
        ["name", "schedule", "timezone", "next_tick", "last_tick", "last_job", "active"],
        [
            (
                item.name,
                item.schedule,
                item.timezone,
                _when(item.next_tick),
                _when(item.state.last_tick if item.state else None),
                _last_job(item),
                {True: "yes", False: "no", None: "?"}[item.active],
            )
            for item in listed
        ],
    )


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _last_job(item: PeriodicListing) -> str:
    state = item.state
    if state is None or state.last_job_id is None:
        return "-"
    status = state.last_job_status.value if state.last_job_status else "pruned"
    return f"{state.last_job_id} ({status})"

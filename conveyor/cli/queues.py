"""`conveyor queues list/set/pause/resume`: queue settings (SPEC §7), held in the store and
changed while the fleet runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from conveyor.app import Conveyor
from conveyor.cli import options as opt
from conveyor.cli.output import print_json, print_table
from conveyor.cli.run import settings_from
from conveyor.errors import InvalidJob
from conveyor.jobs import QUEUE_LIMIT_MAX, JobStatus, QueueSettings
from conveyor.process import prepare_app
from conveyor.validation import QueueOptions, queue_changes, queue_name

queues_cli = typer.Typer(
    help="Queue settings: limits, fair share, pause and resume, for every worker at once.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

QueueName = Annotated[str, typer.Argument(help="the queue's name", show_default=False)]
_UNCHANGED = "[default: unchanged]"


def register(cli: typer.Typer) -> None:
    cli.add_typer(queues_cli, name="queues")


@contextmanager
def _app(database_url: str | None, app: str | None) -> Iterator[Conveyor]:
    """The command's app on its store, which must have the schema (nothing is created)."""
    conveyor = prepare_app(settings_from(database_url=database_url, app=app), create_schema=False)
    try:
        yield conveyor
    finally:
        conveyor.close()


def _checked(check: Callable[[], object]) -> None:
    """A bad name or value is a usage error: one line, exit 2 (as for other bad options),
    before the store is opened."""
    try:
        check()
    except InvalidJob as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@queues_cli.command("list")
def list_queues(
    as_json: opt.Json = False, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None
) -> None:
    """Every queue that has jobs or settings: its limits, pause, backoff and job counts
    (--json: the JSON of GET /queues)."""
    with _app(database_url, app) as conveyor:
        queues = conveyor.queues()
    if as_json:
        print_json({"queues": [queue.to_json() for queue in queues]})
    else:
        print_queues(queues)


@queues_cli.command("set")
def set_queue(
    name: QueueName,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            metavar="N",
            help="at most N jobs of the queue processing at once across all workers, "
            f"1 to {QUEUE_LIMIT_MAX}; none: no limit {_UNCHANGED}",
            show_default=False,
        ),
    ] = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit",
            metavar="N/s|N/m|N/h",
            help="at most N jobs of the queue started in any second, minute or hour (a "
            f"sliding window), e.g. 10/s; none: no limit {_UNCHANGED}",
            show_default=False,
        ),
    ] = None,
    key_concurrency: Annotated[
        str | None,
        typer.Option(
            "--key-concurrency",
            metavar="N",
            help="at most N processing jobs per concurrency_key (jobs without a key are not "
            f"limited by it); none: no limit {_UNCHANGED}",
            show_default=False,
        ),
    ] = None,
    fair: Annotated[
        bool | None,
        typer.Option(
            "--fair/--no-fair",
            help="claims rotate across concurrency_keys, so a key with a large backlog does "
            f"not hold back the others {_UNCHANGED}",
            show_default=False,
        ),
    ] = None,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Change a queue's settings for the whole fleet, at once, and print them as JSON. Only
    the options given change."""
    options = QueueOptions()
    if concurrency is not None:
        options["concurrency"] = concurrency
    if rate_limit is not None:
        options["rate_limit"] = rate_limit
    if key_concurrency is not None:
        options["key_concurrency"] = key_concurrency
    if fair is not None:
        options["fair"] = fair
    if not options:
        typer.echo(
            "error: nothing to set: give --concurrency, --rate-limit, --key-concurrency, "
            "--fair or --no-fair",
            err=True,
        )
        raise typer.Exit(2)
    _checked(lambda: (queue_name(name), queue_changes(options)))
    with _app(database_url, app) as conveyor:
        print_json(conveyor.configure_queue(name, **options).to_json())


@queues_cli.command("pause")
def pause(name: QueueName, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Pause a queue on every worker: none of its jobs starts until `conveyor queues resume`
    (running jobs finish; enqueueing still works). Prints its settings as JSON."""
    _checked(lambda: queue_name(name))
    with _app(database_url, app) as conveyor:
        print_json(conveyor.pause_queue(name).to_json())


@queues_cli.command("resume")
def resume(name: QueueName, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Resume a queue: its jobs start again at once (this also ends a fleet-wide backoff,
    paused_until). Prints its settings as JSON."""
    _checked(lambda: queue_name(name))
    with _app(database_url, app) as conveyor:
        print_json(conveyor.resume_queue(name).to_json())


def print_queues(queues: list[QueueSettings]) -> None:
    if not queues:
        typer.echo("no queues")
        return
    counted = (JobStatus.PENDING, JobStatus.PROCESSING)
    print_table(
        [
            "queue",
            "concurrency",
            "rate_limit",
            "key_concurrency",
            "fair",
            "paused",
            "paused_until",
            *counted,
            "total",
        ],
        [
            (
                queue.name,
                _limit(queue.concurrency),
                _limit(queue.rate_limit),
                _limit(queue.key_concurrency),
                "yes" if queue.fair else "no",
                "yes" if queue.paused else "no",
                "" if queue.paused_until is None else queue.paused_until.isoformat("T", "seconds"),
                *((queue.counts or {}).get(status, 0) for status in counted),
                sum((queue.counts or {}).values()),
            )
            for queue in queues
        ],
    )


def _limit(value: object) -> str:
    return "none" if value is None else str(value)

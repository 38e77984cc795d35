"""Commands on jobs: enqueue, seed, jobs list/show/retry/cancel, stats, prune."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from conveyor.app import Conveyor
from conveyor.cli import options as opt
from conveyor.cli.output import print_job, print_jobs, print_json, print_stats
from conveyor.cli.run import settings_from
from conveyor.errors import ConveyorError, InvalidJob, JobNotFound
from conveyor.jobs import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    LIST_LIMIT_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    JobStatus,
)
from conveyor.process import prepare_app
from conveyor.validation import MAX_RETENTION_DAYS, job_filter, parse_duration

jobs_cli = typer.Typer(help="Inspect and act on jobs.", no_args_is_help=True, rich_markup_mode=None)

SEED_BATCH = 1000
LIST_LIMIT = 20  # `jobs list` shows fewer than GET /jobs: a terminal's worth
JobId = Annotated[int, typer.Argument(help="the job's id")]


def register(cli: typer.Typer) -> None:
    cli.command()(enqueue)
    cli.command()(seed)
    cli.command()(stats)
    cli.command()(prune)
    cli.add_typer(jobs_cli, name="jobs")


@contextmanager
def _app(database_url: str | None, app: str | None) -> Iterator[Conveyor]:
    """The command's app on its store (SPEC §3 "Which database"), which must have the
    schema: a command never creates a database. Closed at the end of the block."""
    conveyor = prepare_app(settings_from(database_url=database_url, app=app), create_schema=False)
    try:
        yield conveyor
    finally:
        conveyor.close()


def enqueue(
    type: Annotated[str, typer.Argument(help="task type, e.g. reverse")],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            help='JSON, e.g. \'{"order_id": "A1"}\' for keyword arguments or \'"hello"\' for '
            "one argument [default: null, no arguments]",
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority",
            help=f"higher runs first, {PRIORITY_MIN} to {PRIORITY_MAX} "
            f"[default: the task's own, else {DEFAULT_PRIORITY}]",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            help=f'[default: the task\'s own, else "{DEFAULT_QUEUE}"]',
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", help="seconds before it may run [default: 0]", show_default=False),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            "--unique-key",
            help="at most one unfinished job per key: an enqueue with the key of one "
            "returns that job [default: none]",
            show_default=False,
        ),
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option(
            "--concurrency-key",
            help="e.g. a tenant: the queue's key_concurrency limits jobs processing per key, "
            "and a fair queue rotates across keys [default: none]",
            show_default=False,
        ),
    ] = None,
    max_attempts: opt.JobMaxAttempts = None,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Add one job and print it as JSON (the store must have its schema: `conveyor
    migrate`, or a running `serve`/`worker`, creates it)."""
    value: object = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except ValueError as exc:
            raise InvalidJob(f"--payload is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidJob("--payload is nested too deeply") from None
    conveyor = prepare_app(settings_from(database_url=database_url, app=app), create_schema=False)
    try:
        job = conveyor.enqueue(
            type,
            value,
            priority=priority,
            queue=queue,
            delay=delay,
            unique_key=unique_key,
            max_attempts=max_attempts,
            concurrency_key=concurrency_key,
        )
    finally:
        conveyor.close()
    print_job(job)


def seed(
    count: Annotated[
        int, typer.Option("--count", min=1, max=10_000_000, help="how many jobs")
    ] = 20,
    database_url: opt.DatabaseUrl = None,
) -> None:
    """Insert sample `demo` jobs with payloads "Test task 1" … "Test task N" (for the demo
    app: creates the schema when it is missing)."""
    conveyor = prepare_app(settings_from(database_url=database_url, app="conveyor.demo:app"))
    try:
        with typer.progressbar(length=count, label="seeding", file=None) as bar:
            for start in range(0, count, SEED_BATCH):
                n = min(SEED_BATCH, count - start)
                conveyor.enqueue_many(
                    [
                        {"type": "demo", "payload": f"Test task {i}"}
                        for i in range(start + 1, start + n + 1)
                    ]
                )
                bar.update(n)
    finally:
        conveyor.close()
    typer.echo(f"seeded {count} demo jobs")


@jobs_cli.command("list")
def list_jobs(
    status: Annotated[
        JobStatus | None,
        typer.Option(
            "--status", help="only jobs in this status [default: any]", show_default=False
        ),
    ] = None,
    type: Annotated[
        str | None,
        typer.Option(
            "--type", help="only jobs of this task type [default: any]", show_default=False
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", help="only jobs of this queue [default: any]", show_default=False),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=LIST_LIMIT_MAX, help="how many")
    ] = LIST_LIMIT,
    before_id: Annotated[
        int | None,
        typer.Option(
            "--before-id",
            min=1,
            help="only jobs with a smaller id: the next page [default: from the newest]",
            show_default=False,
        ),
    ] = None,
    as_json: opt.Json = False,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """List jobs, newest first."""
    # bad filter values are refused before the store is opened
    job_filter(status=status, type=type, queue=queue, before_id=before_id, limit=limit)
    with _app(database_url, app) as conveyor:
        found = conveyor.list_jobs(
            status=status, type=type, queue=queue, before_id=before_id, limit=limit
        )
    if as_json:
        print_json({"jobs": [j.to_json() for j in found]})
    else:
        print_jobs(found)


@jobs_cli.command("show")
def show(job_id: JobId, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Print one job as JSON."""
    with _app(database_url, app) as conveyor:
        job = conveyor.get_job(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} not found")
    print_job(job)


@jobs_cli.command("retry")
def retry(job_id: JobId, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Put a failed or cancelled job back to pending, runnable now (a job cancelled while
    running waits until that run has stopped)."""
    with _app(database_url, app) as conveyor:
        print_job(conveyor.retry(job_id))


@jobs_cli.command("cancel")
def cancel(job_id: JobId, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Cancel a pending or processing job."""
    with _app(database_url, app) as conveyor:
        print_job(conveyor.cancel(job_id))


def stats(
    as_json: opt.Json = False, database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None
) -> None:
    """Counts by queue and status."""
    with _app(database_url, app) as conveyor:
        counts = conveyor.stats()
    if as_json:
        print_json({"queues": counts})
    else:
        print_stats(counts)


MAX_DURATION_DAYS = MAX_RETENTION_DAYS  # the longest retention prune takes (why: validation.py)
# parse_duration lives in validation.py: the retention options of serve and worker (Settings)
# read the same format.


def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help=f"e.g. 7d, 12h, 30m, 45s; 0 to {MAX_DURATION_DAYS}d (100 years)",
        ),
    ] = "7d",
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Delete finished jobs (done, failed, cancelled) past retention."""
    try:
        age = parse_duration(older_than)
    except ConveyorError as exc:
        # A bad option value is a usage error: exit 2 as for other bad options, in one line.
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with _app(database_url, app) as conveyor:
        deleted = conveyor.prune(older_than=age)
    typer.echo(f"pruned {deleted} finished jobs older than {older_than}")

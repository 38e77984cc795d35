"""Commands on jobs: enqueue, seed, jobs list/show/retry/cancel, stats, prune."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, NoReturn

import typer

from conveyor.app import Conveyor
from conveyor.cli import options as opt
from conveyor.cli.output import print_job, print_jobs, print_json, print_stats
from conveyor.cli.run import settings_from
from conveyor.errors import ConveyorError, InvalidJob, JobNotFound
from conveyor.jobs import (
    CANCELLABLE,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    LIST_LIMIT_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    RETRYABLE,
    BulkFilter,
    JobStatus,
)
from conveyor.process import prepare_app
from conveyor.validation import MAX_RETENTION_DAYS, bulk_filter, job_filter, parse_duration

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
    depends_on: Annotated[
        str | None,
        typer.Option(
            "--depends-on",
            help="comma-separated ids of jobs this one waits for, e.g. 1,2 [default: none]",
            show_default=False,
        ),
    ] = None,
    on_dependency_failure: Annotated[
        str | None,
        typer.Option(
            "--on-dependency-failure",
            help='"cancel": a failed or cancelled dependency cancels this job; "run": it '
            "runs once they have finished, whatever their status [default: cancel]",
            show_default=False,
        ),
    ] = None,
    max_attempts: opt.JobMaxAttempts = None,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Add one job and print it as JSON (the store must have its schema: `conveyor
    migrate`, or a running `serve`/`worker`, creates it)."""
    dependency_ids = None if depends_on is None else _id_list(depends_on, "--depends-on")
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
            depends_on=dependency_ids,
            on_dependency_failure=on_dependency_failure,
        )
    finally:
        conveyor.close()
    print_job(job)


def _id_list(text: str, option: str) -> list[int]:
    """ "1,2,3" → [1, 2, 3]; anything else is a one-line InvalidJob."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
        raise InvalidJob(f"{option} takes comma-separated job ids, e.g. 1,2; got {text[:40]!r}")
    return [int(part) for part in parts]


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


# `jobs retry` and `jobs cancel` act on one job (JOB_ID) or on every job of a filter (SPEC §8
# bulk actions), whose --status is required: a bulk action over every job, by a forgotten
# option, would be a disaster.
OneJobId = Annotated[
    int | None,
    typer.Argument(
        metavar="JOB_ID", help="the job's id; leave it out to act on a filter (--status …)"
    ),
]
QueueOption = Annotated[
    str | None,
    typer.Option(
        "--queue", help="with --status: only jobs of this queue [default: any]", show_default=False
    ),
]
TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type",
        help="with --status: only jobs of this task type [default: any]",
        show_default=False,
    ),
]
CreatedBeforeOption = Annotated[
    str | None,
    typer.Option(
        "--created-before",
        help="with --status: only jobs created before this time, ISO 8601 with a timezone, "
        "e.g. 2030-01-01T12:00:00Z [default: any time]",
        show_default=False,
    ),
]


def _bulk_query(
    action: Literal["cancel", "retry"],
    job_id: int | None,
    status: str | None,
    queue: str | None,
    type: str | None,
    created_before: str | None,
) -> BulkFilter | None:
    """The filter of a bulk action, or None to act on JOB_ID. Both, neither, or a bad
    filter is a usage error: one line, exit 2, before the store is opened."""
    filtered = any(value is not None for value in (status, queue, type, created_before))
    if job_id is not None and filtered:
        _usage_error("give either a JOB_ID or --status with its filters, not both")
    if job_id is None and not filtered:
        _usage_error(f"give a JOB_ID, or --status to {action} every job that matches")
    if job_id is not None:
        return None
    if status is None:
        applies = CANCELLABLE if action == "cancel" else RETRYABLE
        names = " or ".join(s.value for s in applies)
        _usage_error(f"--status is required with a filter: {action} applies to {names} jobs")
    try:
        return bulk_filter(
            action, status=status, queue=queue, type=type, created_before=created_before
        )
    except ConveyorError as exc:
        _usage_error(str(exc))


def _usage_error(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@jobs_cli.command("retry")
def retry(
    job_id: OneJobId = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="retry every job in this status, failed or cancelled (required without "
            'JOB_ID), in batches; prints {"count": N} [default: none, act on JOB_ID]',
            show_default=False,
        ),
    ] = None,
    queue: QueueOption = None,
    type: TypeOption = None,
    created_before: CreatedBeforeOption = None,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Put a failed or cancelled job back to pending, runnable now, and print it (a job
    cancelled while running waits until that run has stopped). Or, with --status failed
    (or cancelled) instead of JOB_ID, every job in that status, narrowed by --queue, --type
    and --created-before: prints {"count": N}, how many were retried. --status is required
    for that: there is no retry of every job at once."""
    query = _bulk_query("retry", job_id, status, queue, type, created_before)
    with _app(database_url, app) as conveyor:
        if query is None:
            assert job_id is not None
            print_job(conveyor.retry(job_id))
        else:
            print_json({"count": conveyor.retry_jobs(**_filters(query))})


@jobs_cli.command("cancel")
def cancel(
    job_id: OneJobId = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="cancel every job in this status, pending or processing (required "
            'without JOB_ID), in batches; prints {"count": N} [default: none, act on JOB_ID]',
            show_default=False,
        ),
    ] = None,
    queue: QueueOption = None,
    type: TypeOption = None,
    created_before: CreatedBeforeOption = None,
    database_url: opt.DatabaseUrl = None,
    app: opt.AppSpec = None,
) -> None:
    """Cancel a pending or processing job and print it. Or, with --status pending (or
    processing) instead of JOB_ID, every job in that status, narrowed by --queue, --type
    and --created-before: prints {"count": N}, how many were cancelled. --status is
    required for that: there is no cancel of every job at once."""
    query = _bulk_query("cancel", job_id, status, queue, type, created_before)
    with _app(database_url, app) as conveyor:
        if query is None:
            assert job_id is not None
            print_job(conveyor.cancel(job_id))
        else:
            print_json({"count": conveyor.cancel_jobs(**_filters(query))})


def _filters(query: BulkFilter) -> dict[str, Any]:
    return {
        "status": query.status,
        "queue": query.queue,
        "type": query.type,
        "created_before": query.created_before,
    }


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

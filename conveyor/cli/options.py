"""Options shared by several commands. Defaults are None so that only flags the user gave
are passed to Settings, which fills the rest from the environment and .env."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.jobs import DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_MAX, MAX_ATTEMPTS_MIN
from conveyor.settings import (
    DEFAULT_APP,
    DEFAULT_DATABASE_URL,
    DEFAULT_FETCH_INTERVAL,
    DEFAULT_FETCH_LIMIT,
    DEFAULT_HOST,
    DEFAULT_LEASE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RETAIN_CANCELLED,
    DEFAULT_RETAIN_DONE,
    DEFAULT_RETAIN_FAILED,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_WORKERS,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db, postgresql://… or redis://…; given here, it also overrides "
        "the URL the app was built with [env: DATABASE_URL, for apps built without a URL; "
        f"default: the app's own URL, else {DEFAULT_DATABASE_URL}]",
        show_default=False,
    ),
]
AppSpec = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="module:attribute of your Conveyor app, e.g. myproject.jobs:app "
        f"[env: CONVEYOR_APP; default: {DEFAULT_APP}, the built-in demo app]",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help=f"concurrent jobs in this process [env: WORKER_COUNT; default: {DEFAULT_WORKERS}]",
        show_default=False,
    ),
]
ListenDatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--listen-database-url",
        help="postgresql://… a direct (or session-mode) connection for wake-ups, when "
        "--database-url is a transaction-mode pooler such as PgBouncer "
        "[env: LISTEN_DATABASE_URL; default: none, wake-ups LISTEN through --database-url, "
        "or workers poll when it ends in ?pooler=transaction]",
        show_default=False,
    ),
]
FetchInterval = Annotated[
    float | None,
    typer.Option(
        "--fetch-interval",
        "--poll-interval",
        help="max seconds between fetches when nothing wakes the "
        f"fetcher [env: FETCH_INTERVAL or POLL_INTERVAL; default: {DEFAULT_FETCH_INTERVAL:g}, "
        f"{DEFAULT_POLL_INTERVAL:g} when workers poll (?pooler=transaction without "
        "LISTEN_DATABASE_URL)]",
        show_default=False,
    ),
]
FetchLimit = Annotated[
    int | None,
    typer.Option(
        "--fetch-limit",
        help="jobs claimed per fetch, never more than free slots "
        f"[env: FETCH_LIMIT; default: {DEFAULT_FETCH_LIMIT}]",
        show_default=False,
    ),
]
Queues = Annotated[
    str | None,
    typer.Option(
        "--queues",
        help="comma-separated queues to serve [env: CONVEYOR_QUEUES; default: all queues]",
        show_default=False,
    ),
]
Lease = Annotated[
    float | None,
    typer.Option(
        "--lease",
        help="lease seconds, renewed while a job runs "
        f"[env: LEASE_SECONDS; default: {DEFAULT_LEASE:g}]",
        show_default=False,
    ),
]
ShutdownTimeout = Annotated[
    float | None,
    typer.Option(
        "--shutdown-timeout",
        help="seconds running jobs get to finish on SIGTERM or SIGINT; a second signal "
        f"hands them back at once [env: SHUTDOWN_TIMEOUT; default: {DEFAULT_SHUTDOWN_TIMEOUT:g}]",
        show_default=False,
    ),
]
Host = Annotated[
    str | None,
    typer.Option(
        "--host",
        help=f"HTTP bind address [env: HOST; default: {DEFAULT_HOST}]",
        show_default=False,
    ),
]
AllowedHosts = Annotated[
    str | None,
    typer.Option(
        "--allowed-hosts",
        help="comma-separated names clients reach the API by, checked against the Host "
        "header: jobs.example.com, .example.com (and subdomains), *.example.com (subdomains), "
        "* (any); IP addresses and localhost are always accepted [env: ALLOWED_HOSTS; "
        "default: loopback names only, any name when --host is not a loopback address]",
        show_default=False,
    ),
]
Port = Annotated[
    int | None,
    typer.Option(
        "--port",
        help=f"HTTP port, 0 for any free one [env: PORT; default: {DEFAULT_PORT}]",
        show_default=False,
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format", help="text or json [env: LOG_FORMAT; default: text]", show_default=False
    ),
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="DEBUG, INFO, WARNING, ERROR [env: LOG_LEVEL; default: INFO]",
        show_default=False,
    ),
]
MaxAttempts = Annotated[
    int | None,
    typer.Option(
        "--max-attempts",
        help="default max_attempts for tasks that set none "
        f"[env: MAX_ATTEMPTS; default: {DEFAULT_MAX_ATTEMPTS}]",
        show_default=False,
    ),
]
Pool = Annotated[
    str | None,
    typer.Option(
        "--pool",
        help="where sync tasks run: thread (the worker's thread pool) or process (each in a "
        "child process, killed at its timeout or cancel; isolated=True tasks always are) "
        "[env: WORKER_POOL; default: thread]",
        show_default=False,
    ),
]
MaxTasksPerChild = Annotated[
    int | None,
    typer.Option(
        "--max-tasks-per-child",
        help="replace a task's child process after this many jobs, 0 for never "
        "[env: MAX_TASKS_PER_CHILD; default: never]",
        show_default=False,
    ),
]
MaxMemoryPerChild = Annotated[
    float | None,
    typer.Option(
        "--max-memory-per-child",
        help="replace a task's child process whose resident memory after a job is over this "
        "many MiB, 0 for no limit [env: MAX_MEMORY_PER_CHILD; default: no limit]",
        show_default=False,
    ),
]

# SPEC §7 retention (worker/retention.py); the format of `conveyor prune --older-than`
_RETAIN = (
    "jobs this long after they finished (one process of the fleet prunes at a time, in "
    "batches), e.g. 12h, 7d, 2w; 0 or forever keeps them"
)
RetainDone = Annotated[
    str | None,
    typer.Option(
        "--retain-done",
        help=f"delete done {_RETAIN} [env: RETAIN_DONE; default: {DEFAULT_RETAIN_DONE}]",
        show_default=False,
    ),
]
RetainCancelled = Annotated[
    str | None,
    typer.Option(
        "--retain-cancelled",
        help=f"delete cancelled {_RETAIN} "
        f"[env: RETAIN_CANCELLED; default: {DEFAULT_RETAIN_CANCELLED}]",
        show_default=False,
    ),
]
RetainFailed = Annotated[
    str | None,
    typer.Option(
        "--retain-failed",
        help=f"delete failed {_RETAIN} [env: RETAIN_FAILED; default: {DEFAULT_RETAIN_FAILED}]",
        show_default=False,
    ),
]
JobMaxAttempts = Annotated[
    int | None,
    typer.Option(
        "--max-attempts",
        help=f"attempts before the job fails for good, {MAX_ATTEMPTS_MIN} to {MAX_ATTEMPTS_MAX} "
        "[env: MAX_ATTEMPTS, for tasks that set none; "
        f"default: the task's own, else {DEFAULT_MAX_ATTEMPTS}]",
        show_default=False,
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="print JSON instead of a table [default: a table]")
]

"""Options shared by several commands. Defaults are None so that only flags the user gave
are passed to Settings, which fills the rest from the environment and .env."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db or postgresql://… [env: DATABASE_URL; "
        "default sqlite:///conveyor.db]",
        show_default=False,
    ),
]
AppSpec = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="module:attribute of your Conveyor app [env: CONVEYOR_APP; "
        "default: the built-in demo app]",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="concurrent jobs in this process [env: WORKER_COUNT; default 5]",
        show_default=False,
    ),
]
FetchInterval = Annotated[
    float | None,
    typer.Option(
        "--fetch-interval",
        help="max seconds between fetches when nothing wakes the "
        "fetcher [env: FETCH_INTERVAL; default 5]",
        show_default=False,
    ),
]
FetchLimit = Annotated[
    int | None,
    typer.Option(
        "--fetch-limit",
        help="jobs claimed per fetch, never more than free slots [env: FETCH_LIMIT; default 10]",
        show_default=False,
    ),
]
Queues = Annotated[
    str | None,
    typer.Option(
        "--queues",
        help="comma-separated queues to serve [env: CONVEYOR_QUEUES; default all]",
        show_default=False,
    ),
]
Lease = Annotated[
    float | None,
    typer.Option(
        "--lease",
        help="lease seconds, renewed while a job runs [env: LEASE_SECONDS; default 30]",
        show_default=False,
    ),
]
ShutdownTimeout = Annotated[
    float | None,
    typer.Option(
        "--shutdown-timeout",
        help="seconds running jobs get to finish on SIGTERM [env: SHUTDOWN_TIMEOUT; default 30]",
        show_default=False,
    ),
]
Host = Annotated[
    str | None,
    typer.Option(
        "--host", help="HTTP bind address [env: HOST; default 127.0.0.1]", show_default=False
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
    typer.Option("--port", help="HTTP port [env: PORT; default 8080]", show_default=False),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format", help="text or json [env: LOG_FORMAT; default text]", show_default=False
    ),
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="DEBUG, INFO, WARNING, ERROR [env: LOG_LEVEL; default INFO]",
        show_default=False,
    ),
]
MaxAttempts = Annotated[
    int | None,
    typer.Option(
        "--max-attempts",
        help="default max_attempts for tasks that set none [env: MAX_ATTEMPTS; default 5]",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

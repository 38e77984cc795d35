"""Long-running commands: migrate, serve, worker."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli import options as opt
from conveyor.logs import setup_logging
from conveyor.settings import Settings
from conveyor.stores import open_store


def settings_from(**given: object) -> Settings:
    """Flags the user gave (not None) win over the environment, which wins over .env."""
    flags: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    return Settings(**flags)


def register(cli: typer.Typer) -> None:
    cli.command()(migrate)
    cli.command()(serve)
    cli.command()(worker)


def migrate(database_url: opt.DatabaseUrl = None, app: opt.AppSpec = None) -> None:
    """Create or upgrade the schema (idempotent, versioned)."""
    from conveyor.process import store_url

    store = open_store(store_url(settings_from(database_url=database_url, app=app)))
    try:
        before = store.schema_version()
        after = store.migrate()
    finally:
        store.close()
    if before == after:
        typer.echo(f"schema is up to date (version {after})")
    else:
        typer.echo(f"schema migrated from version {before} to {after}")


def worker(
    database_url: opt.DatabaseUrl = None,
    listen_database_url: opt.ListenDatabaseUrl = None,
    app: opt.AppSpec = None,
    workers: opt.Workers = None,
    fetch_interval: opt.FetchInterval = None,
    fetch_limit: opt.FetchLimit = None,
    queues: opt.Queues = None,
    lease: opt.Lease = None,
    shutdown_timeout: opt.ShutdownTimeout = None,
    log_format: opt.LogFormat = None,
    log_level: opt.LogLevel = None,
    max_attempts: opt.MaxAttempts = None,
    pool: opt.Pool = None,
    max_tasks_per_child: opt.MaxTasksPerChild = None,
    max_memory_per_child: opt.MaxMemoryPerChild = None,
    retain_done: opt.RetainDone = None,
    retain_cancelled: opt.RetainCancelled = None,
    retain_failed: opt.RetainFailed = None,
) -> int:
    """Run a worker pool only (add as many as you like, on any machine, same database)."""
    from conveyor.process import run_worker

    settings = settings_from(
        database_url=database_url,
        listen_database_url=listen_database_url,
        app=app,
        workers=workers,
        fetch_interval=fetch_interval,
        fetch_limit=fetch_limit,
        queues=queues,
        lease=lease,
        shutdown_timeout=shutdown_timeout,
        log_format=log_format,
        log_level=log_level,
        max_attempts=max_attempts,
        pool=pool,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        retain_done=retain_done,
        retain_cancelled=retain_cancelled,
        retain_failed=retain_failed,
    )
    if settings.workers < 1:
        raise typer.BadParameter("a worker needs --workers of at least 1")
    setup_logging(settings.log_format, settings.log_level)
    return run_worker(settings)


def serve(
    database_url: opt.DatabaseUrl = None,
    listen_database_url: opt.ListenDatabaseUrl = None,
    app: opt.AppSpec = None,
    host: opt.Host = None,
    port: opt.Port = None,
    allowed_hosts: opt.AllowedHosts = None,
    workers: opt.Workers = None,
    fetch_interval: opt.FetchInterval = None,
    fetch_limit: opt.FetchLimit = None,
    queues: opt.Queues = None,
    lease: opt.Lease = None,
    shutdown_timeout: opt.ShutdownTimeout = None,
    log_format: opt.LogFormat = None,
    log_level: opt.LogLevel = None,
    max_attempts: opt.MaxAttempts = None,
    pool: opt.Pool = None,
    max_tasks_per_child: opt.MaxTasksPerChild = None,
    max_memory_per_child: opt.MaxMemoryPerChild = None,
    retain_done: opt.RetainDone = None,
    retain_cancelled: opt.RetainCancelled = None,
    retain_failed: opt.RetainFailed = None,
) -> int:
    """HTTP API + dashboard and a worker pool in one process (--workers 0: API only).

    Set API_TOKEN (environment or .env) to require `Authorization: Bearer <token>`; an
    API_TOKEN that is set but empty is an error, not "no authentication". Without a token,
    anyone who can reach the port can enqueue, cancel and retry jobs: the default --host
    127.0.0.1 keeps the API on this machine.
    """
    from conveyor.api.auth import configured_token
    from conveyor.api.security import HostPolicy
    from conveyor.process import run_serve

    settings = settings_from(
        database_url=database_url,
        listen_database_url=listen_database_url,
        app=app,
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        workers=workers,
        fetch_interval=fetch_interval,
        fetch_limit=fetch_limit,
        queues=queues,
        lease=lease,
        shutdown_timeout=shutdown_timeout,
        log_format=log_format,
        log_level=log_level,
        max_attempts=max_attempts,
        pool=pool,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        retain_done=retain_done,
        retain_cancelled=retain_cancelled,
        retain_failed=retain_failed,
    )
    # Refuse a bad API_TOKEN or ALLOWED_HOSTS before the store is opened or migrated.
    configured_token(settings.api_token)
    HostPolicy.from_settings(settings)
    setup_logging(settings.log_format, settings.log_level)
    return run_serve(settings)

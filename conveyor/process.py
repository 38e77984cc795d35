"""Composition root: Settings → app + store → worker pool (and, for serve, the HTTP API)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine

from conveyor.app import Conveyor
from conveyor.errors import StoreFileReplaced, StoreUnavailable
from conveyor.loader import load_app
from conveyor.metrics import Metrics
from conveyor.settings import DEFAULT_POLL_INTERVAL, Settings, redact_url
from conveyor.stores import Store, open_store
from conveyor.worker import PoolConfig, WorkerPool
from conveyor.worker.isolation import IsolationConfig
from conveyor.worker.retention import RetentionConfig

log = logging.getLogger("conveyor")


def configured_app(settings: Settings) -> Conveyor:
    """Load the app (--app) and point it at its store, without connecting yet. SPEC §3
    "Which database": an app built with a URL (`Conveyor("sqlite:///jobs.db")`) keeps it
    unless --database-url is given on the command line; an app built without one, such as
    the demo app, reads DATABASE_URL from the environment and .env. --max-attempts alike."""
    app = load_app(settings.app)
    app.configure(
        database_url=settings.database_url if "database_url" in settings.flags else None,
        max_attempts=settings.max_attempts if "max_attempts" in settings.flags else None,
        listen_database_url=(
            settings.listen_database_url if "listen_database_url" in settings.flags else None
        ),
    )
    return app


def prepare_app(settings: Settings, *, create_schema: bool = True) -> Conveyor:
    """The configured app, connected (a bad URL fails before anything starts). A missing
    schema is created (`serve`, `worker`, `seed`), or, with `create_schema=False`, is an
    error that says to run `conveyor migrate` and creates nothing."""
    app = configured_app(settings)
    if not create_schema:
        open_existing_store(app.database_url).close()
    _ = app.store  # opens the store, creating the schema when it is missing
    return app


def store_url(settings: Settings) -> str:
    """The URL of the store a command uses: --database-url when given on the command line,
    else the app's own (which is DATABASE_URL for an app built without one)."""
    if "database_url" in settings.flags:
        return settings.database_url
    return configured_app(settings).database_url


def open_existing_store(url: str) -> Store:
    """The store at `url`, which must have Conveyor's schema: otherwise StoreUnavailable
    saying to run `conveyor migrate`, and nothing is created (not even a SQLite file)."""
    store = open_store(url)
    try:
        require_schema(store, url)
    except BaseException:
        store.close()
        raise
    return store


def require_schema(store: Store, url: str) -> None:
    if store.schema_version() > 0:
        return
    what = "has no Conveyor schema"
    if url.lower().startswith("sqlite:"):
        from conveyor.stores.sqlite.store import path_from_url

        path = path_from_url(url)
        special = path == ":memory:" or path.startswith("file:")
        if not special and not os.path.lexists(path):
            what = f"does not exist ({os.path.abspath(path)})"
    raise StoreUnavailable(
        f"{redact_url(url)} {what}: run `conveyor migrate` "
        "(`conveyor serve` and `conveyor worker` create it too)"
    )


def log_store(app: Conveyor, settings: Settings) -> None:
    """The first log line of `serve` and `worker`, once the store is open (a store that
    cannot be opened is an error line of its own): which store, its password hidden; and
    a warning when DATABASE_URL names another store than the app's own, which wins."""
    log.info("store: %s", redact_url(app.database_url))
    env_url = settings.database_url
    if (
        app.has_own_database_url
        and "database_url" not in settings.flags
        and "database_url" in settings.model_fields_set  # from the environment or .env
        and env_url != app.database_url
    ):
        log.warning(
            "DATABASE_URL (%s) is not used: %s names its own store; "
            "--database-url on the command line overrides it",
            redact_url(env_url),
            settings.app,
        )


def log_wakeups(app: Conveyor, settings: Settings) -> None:
    """SPEC §10: a worker that cannot be woken says so at start, with how often it polls;
    one through LISTEN_DATABASE_URL says where it listens (password hidden)."""
    if not app.store.listens:
        log.info(
            "wake-ups: none through the pooler (?pooler=transaction, no LISTEN_DATABASE_URL): "
            "polling every %gs",
            fetch_interval(settings, listens=False),
        )
    elif app.listen_database_url is not None and app.database_url.startswith("postgres"):
        log.info("wake-ups: LISTEN at %s", redact_url(app.listen_database_url))


def fetch_interval(settings: Settings, *, listens: bool) -> float:
    """--fetch-interval (--poll-interval) as given, else its default: DEFAULT_POLL_INTERVAL
    when nothing wakes the workers (the store `listens` not), DEFAULT_FETCH_INTERVAL
    otherwise."""
    if "fetch_interval" in settings.model_fields_set or listens:
        return settings.fetch_interval
    return DEFAULT_POLL_INTERVAL


def pool_config(settings: Settings, *, listens: bool = True) -> PoolConfig:
    """The worker pool's settings; `listens`: whether the store wakes idle workers."""
    return PoolConfig(
        concurrency=settings.workers,
        fetch_interval=fetch_interval(settings, listens=listens),
        fetch_limit=settings.fetch_limit,
        queues=settings.queue_list,
        lease=settings.lease,
        shutdown_timeout=settings.shutdown_timeout,
        isolation=IsolationConfig(
            every_sync_task=settings.pool == "process",
            max_tasks_per_child=settings.max_tasks_per_child or None,
            max_memory_per_child=settings.max_memory_per_child or None,
            app_spec=settings.app,  # where a child process finds the tasks
        ),
        retention=RetentionConfig.of(settings.retention),
    )


def install_stop_signals(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """SPEC §3 graceful shutdown. The first SIGTERM/SIGINT sets `stop`: stop claiming, let
    running jobs finish for up to shutdown_timeout. One during that wait sets `hurry`: hand
    running jobs back at once. The pool does the rest."""
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s received", sig.name)
            stop.set()
        elif not hurry.is_set():
            log.warning("%s again: handing running jobs back now", sig.name)
            hurry.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, received, sig)


def run_worker(settings: Settings) -> int:
    """`conveyor worker`. Logging is the caller's: the CLI sets it up (conveyor.logs)."""
    app = prepare_app(settings)
    log_store(app, settings)
    log_wakeups(app, settings)
    config = pool_config(settings, listens=app.store.listens)

    async def main(stop: asyncio.Event, hurry: asyncio.Event) -> None:
        await WorkerPool(app, config, metrics=Metrics()).run(stop, hurry)

    return _run(app, main)


def run_serve(settings: Settings) -> int:
    """`conveyor serve`: the HTTP API and (unless --workers 0) a worker pool, one process."""
    app = prepare_app(settings)
    log_store(app, settings)
    if settings.workers:
        log_wakeups(app, settings)

    async def main(stop: asyncio.Event, hurry: asyncio.Event) -> None:
        await serve(app, settings, stop, hurry=hurry)

    return _run(app, main)


async def serve(
    app: Conveyor,
    settings: Settings,
    stop: asyncio.Event,
    *,
    metrics: Metrics | None = None,
    hurry: asyncio.Event | None = None,
) -> None:
    """Serve HTTP and run the pool on this loop until `stop` is set. Then HTTP stops
    accepting and finishes its requests while the pool finishes or hands back its jobs;
    `hurry` (a second signal) cuts both waits short. If either side ends on its own (a
    crash), the other is stopped too."""
    hurry = hurry or asyncio.Event()
    # Imported here: the HTTP stack (FastAPI, uvicorn, prometheus_client, Jinja2) costs a
    # fifth of a second at startup that `conveyor worker` and the job commands do not need.
    from conveyor.api import create_app
    from conveyor.api.security import serve_warnings
    from conveyor.api.server import ApiServer, bind_socket, socket_url

    metrics = metrics or Metrics()
    sock = bind_socket(settings.host, settings.port)
    url = socket_url(sock)
    for warning in serve_warnings(settings):  # reachable from the network, unprotected
        log.warning(warning)
    try:
        server = ApiServer(
            create_app(app, settings, metrics),
            shutdown_timeout=settings.shutdown_timeout,
            on_started=lambda: log.info("Conveyor serving on %s", url),
        )
        config = pool_config(settings, listens=app.store.listens)
        pool = WorkerPool(app, config, metrics=metrics) if settings.workers else None
    except BaseException:
        sock.close()
        raise
    if pool is None:
        log.info("--workers 0: API only, this process runs no jobs")

    async def http() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            stop.set()

    async def workers() -> None:
        try:
            await (pool.run(stop, hurry) if pool is not None else stop.wait())
        finally:
            server.should_exit = True

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True
        await hurry.wait()
        server.force_exit = True  # no more waiting for open connections either

    watcher = asyncio.create_task(watch(), name="conveyor-serve-stop")
    try:
        results = await asyncio.gather(http(), workers(), return_exceptions=True)
    finally:
        watcher.cancel()
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _abandon_stragglers() -> None:
    """A task that swallowed its cancellation (its job was handed back already) would keep
    asyncio.run from returning: exit without it, since every outcome is written by now."""
    stuck = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if stuck:
        log.warning("%d task(s) ignored cancellation; exiting without them", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _loop_factory(database_url: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for a SQLite store where it is installed (a dependency except on Windows),
    otherwise asyncio's own loop. On SQLite the worker's own event-loop work is the limit
    and uvloop drains faster; on PostgreSQL it drained slower, so PostgreSQL workers keep
    asyncio (measured: docs/performance.md, second round, "uvloop")."""
    if not database_url.startswith("sqlite"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# How often serving processes check their store's identity, and how long the graceful stop
# may take once it is lost before the process exits anyway (within 5 s in all).
STORE_CHECK_INTERVAL_S = 0.5
STORE_LOST_EXIT_S = 2.0


class StoreWatch:
    """Stops a serving process whose SQLite file was deleted, renamed or replaced under it
    (StoreFileReplaced; the store raises it on every call from then on, see
    stores/sqlite/connections.py): its writes would go to a file no other process sees.
    Checks twice a second, logs an error naming the file, sets the stop event (the pool
    stops claiming, HTTP stops accepting) and lets `_run` raise the error, so the CLI
    prints it and exits 1. Running jobs cannot record their outcome anywhere, so the
    graceful stop gets STORE_LOST_EXIT_S, then the process exits 1 regardless."""

    def __init__(self, app: Conveyor, stop: asyncio.Event) -> None:
        self.app = app
        self.stop = stop
        self.error: StoreFileReplaced | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STORE_CHECK_INTERVAL_S)
            try:
                await asyncio.to_thread(self.app.store.check_identity)
            except StoreFileReplaced as exc:
                self.lost(exc)
                return
            except Exception:  # noqa: S112 - unreachable for now: the pool and /readyz say so
                continue

    def lost(self, exc: StoreFileReplaced) -> None:
        self.error = exc
        log.error("%s", exc)
        self.stop.set()
        timer = threading.Timer(STORE_LOST_EXIT_S, _exit_now)
        timer.daemon = True
        timer.start()


def _exit_now() -> None:
    log.error("did not stop within %.0fs of losing the store: exiting now", STORE_LOST_EXIT_S)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _run(
    app: Conveyor,
    main: Callable[[asyncio.Event, asyncio.Event], Coroutine[None, None, None]],
) -> int:
    async def guarded() -> None:
        stop = asyncio.Event()
        hurry = asyncio.Event()
        install_stop_signals(stop, hurry)
        watch = StoreWatch(app, stop)
        watcher = asyncio.create_task(watch.run(), name="conveyor-store-watch")
        try:
            await main(stop, hurry)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if watch.error is not None:
                raise watch.error  # the CLI prints it on one line and exits 1
        await _abandon_stragglers()

    try:
        with asyncio.Runner(loop_factory=_loop_factory(app.database_url)) as runner:
            runner.run(guarded())
    finally:
        app.close()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0

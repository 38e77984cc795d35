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
from conveyor.errors import StoreFileReplaced
from conveyor.loader import load_app
from conveyor.logs import setup_logging
from conveyor.metrics import Metrics
from conveyor.settings import Settings
from conveyor.worker import PoolConfig, WorkerPool

log = logging.getLogger("conveyor")


def prepare_app(settings: Settings) -> Conveyor:
    """Load the app, point it at the settings' store, create the schema when missing."""
    app = load_app(settings.app)
    app.configure(database_url=settings.database_url, max_attempts=settings.max_attempts)
    _ = app.store  # connect now, so a bad URL fails before anything starts
    return app


def pool_config(settings: Settings) -> PoolConfig:
    return PoolConfig(
        concurrency=settings.workers,
        fetch_interval=settings.fetch_interval,
        fetch_limit=settings.fetch_limit,
        queues=settings.queue_list,
        lease=settings.lease,
        shutdown_timeout=settings.shutdown_timeout,
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT only set the stop event; the pool does the rest (SPEC §3 shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def run_worker(settings: Settings) -> int:
    setup_logging(settings.log_format, settings.log_level)
    app = prepare_app(settings)

    async def main(stop: asyncio.Event) -> None:
        await WorkerPool(app, pool_config(settings), metrics=Metrics()).run(stop)

    return _run(app, main)


def run_serve(settings: Settings) -> int:
    """`conveyor serve`: the HTTP API and (unless --workers 0) a worker pool, one process."""
    setup_logging(settings.log_format, settings.log_level)
    app = prepare_app(settings)

    async def main(stop: asyncio.Event) -> None:
        await serve(app, settings, stop)

    return _run(app, main)


async def serve(
    app: Conveyor, settings: Settings, stop: asyncio.Event, *, metrics: Metrics | None = None
) -> None:
    """Serve HTTP and run the pool on this loop until `stop` is set. Then HTTP stops
    accepting and finishes its requests while the pool finishes or hands back its jobs.
    If either side ends on its own (a crash), the other is stopped too."""
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
        pool = WorkerPool(app, pool_config(settings), metrics=metrics) if settings.workers else None
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
            await (pool.run(stop) if pool is not None else stop.wait())
        finally:
            server.should_exit = True

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

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
    otherwise asyncio's own loop. Measured side by side (`compare`, 3 repeats each way): on
    SQLite the worker's own event-loop work is the limit, and uvloop drains 13.1k -> 17.8k
    jobs/s; on PostgreSQL the database is the limit and uvloop drained less (15.3k ->
    14.0k, and 16.1k -> 12.1k in a 5-repeat run), so PostgreSQL workers keep asyncio."""
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


def _run(app: Conveyor, main: Callable[[asyncio.Event], Coroutine[None, None, None]]) -> int:
    async def guarded() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        watch = StoreWatch(app, stop)
        watcher = asyncio.create_task(watch.run(), name="conveyor-store-watch")
        try:
            await main(stop)
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

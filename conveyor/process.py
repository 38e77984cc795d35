"""Composition root: Settings → app + store → worker pool (and, for serve, the HTTP API)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from conveyor.app import Conveyor
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

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await WorkerPool(app, pool_config(settings), metrics=Metrics()).run(stop)

    try:
        asyncio.run(main())
    finally:
        app.close()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0

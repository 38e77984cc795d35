"""Conveyor inside someone else's program leaves that program's logging alone: only the
`conveyor` command configures the root logger, and even it replaces no handler but its own."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from conveyor import Conveyor
from conveyor.logs import setup_logging
from conveyor.metrics import Metrics
from conveyor.worker import PoolConfig, WorkerPool
from tests.support.procs import ROOT
from tests.support.wait import async_wait_until


@pytest.fixture
def root_logging():
    """The root logger's handlers and level, restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_worker_pool_in_a_program_keeps_the_programs_handlers(root_logging, sqlite_url):
    mine = Collect()
    root_logging.addHandler(mine)
    root_logging.setLevel(logging.INFO)
    before = list(root_logging.handlers)
    app = Conveyor(sqlite_url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> None:
        pool = WorkerPool(app, PoolConfig(concurrency=2, fetch_interval=60), metrics=Metrics())
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await pool.ready.wait()
        job = app.enqueue("add", {"a": 1, "b": 2})
        await async_wait_until(lambda: app.get_job(job.id).status == "done", timeout=10)
        stop.set()
        await asyncio.wait_for(runner, 30)

    try:
        asyncio.run(main())
    finally:
        app.close()
    assert root_logging.handlers == before, "no handler added or removed"
    assert root_logging.level == logging.INFO
    assert any(m.startswith("worker ") and "started" in m for m in mine.messages)
    assert "processing" in mine.messages, "Conveyor's lines reach the program's own handler"


def test_the_cli_setup_replaces_only_its_own_handler(root_logging):
    before = list(root_logging.handlers)  # pytest's own capture handlers among them
    mine = Collect()
    root_logging.addHandler(mine)
    setup_logging("text", "INFO")
    setup_logging("json", "WARNING")  # a second call replaces the first one's handler
    assert mine in root_logging.handlers
    added = [h for h in root_logging.handlers if type(h).__name__ == "_CliHandler"]
    assert len(added) == 1
    assert len(root_logging.handlers) == len(before) + 2
    assert root_logging.level == logging.WARNING


def test_embedding_in_a_real_program_keeps_its_basic_config(tmp_path):
    """A program that configured logging, then enqueues and runs a job with a WorkerPool:
    its own format is kept for Conveyor's lines too."""
    program = tmp_path / "program.py"
    program.write_text(
        textwrap.dedent(
            f"""
            import asyncio, logging, sys
            logging.basicConfig(
                level=logging.INFO, stream=sys.stdout, format="MINE %(name)s %(message)s"
            )
            from conveyor import Conveyor
            from conveyor.metrics import Metrics
            from conveyor.worker import PoolConfig, WorkerPool

            app = Conveyor("sqlite:///{tmp_path / "jobs.db"}")

            @app.task
            def hello() -> str:
                logging.getLogger("program").info("task ran")
                return "hi"

            async def main():
                config = PoolConfig(concurrency=1, fetch_interval=60)
                pool = WorkerPool(app, config, metrics=Metrics())
                stop = asyncio.Event()
                runner = asyncio.create_task(pool.run(stop))
                await pool.ready.wait()
                job = hello.enqueue()
                while app.get_job(job.id).status != "done":
                    await asyncio.sleep(0.01)
                stop.set()
                await runner

            asyncio.run(main())
            app.close()
            handlers = logging.getLogger().handlers
            logging.getLogger("program").info("still mine: %d handler(s)", len(handlers))
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "MINE program task ran" in lines
    assert "MINE program still mine: 1 handler(s)" in lines
    assert any(line.startswith("MINE conveyor") and "processing" in line for line in lines)
    assert proc.stderr == ""

"""Redis for tests: a Debian `redis-server` of this test session's own, on a free port, with
every write fsynced (SPEC §10's durable settings). Never the machine's shared Redis on 6379."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import redis

from tests.support import pg
from tests.support.procs import free_port

BINARY = "/usr/bin/redis-server"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def _unavailable(reason: str) -> NoReturn:
    pg.unavailable(reason, tests="Redis store tests")


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            _unavailable(f"redis-server did not start on {url}: {tail.strip()}")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server on a free port of 127.0.0.1 (append-only file, fsync on every
    write, no RDB snapshots) in a temporary folder; yield its URL (database 0); stop it and
    remove the folder at the end. Fails under CI=true, skips elsewhere, when it cannot start."""
    if not os.path.exists(BINARY):
        _unavailable(f"{BINARY} is not installed (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="conveyor-redis-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = folder / "redis.log"
    command = [
        BINARY,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--dir", str(folder),
        "--save", "",
        "--logfile", str(log),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, url, log)
        yield url
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def flush(url: str) -> None:
    """Empty the test database (every key of the store, and its loaded scripts stay)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import redis

from conveyor.stores.redis.scripts import PREFIX
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


@dataclass
class RedisServer:
    """A redis-server of a test's own: its port and its folder (the append-only file) stay
    the same across `kill` and `start`, as for a server that crashed and came back."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.folder / "redis.log"
        command = [
            BINARY,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.folder),
            "--save", "",
            "--logfile", str(log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                self.stop()
                _unavailable(f"redis-server did not start on {self.url}: {tail.strip()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, only what the append-only file holds survives."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """A crash and a come-back: SIGKILL, then the same port and append-only file."""
        self.kill()
        self.start()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start redis-server on a free port of 127.0.0.1 (append-only file, fsync on every
    write, no RDB snapshots) in a temporary folder; stop it and remove the folder at the
    end. Fails under CI=true, skips elsewhere, when it cannot start."""
    if not os.path.exists(BINARY):
        _unavailable(f"{BINARY} is not installed (apt-get install redis-server)")
    server = RedisServer(Path(tempfile.mkdtemp(prefix="conveyor-redis-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@contextmanager
def running_redis() -> Iterator[str]:
    """`redis_server()`'s URL (database 0)."""
    with redis_server() as server:
        yield server.url


def flush(url: str) -> None:
    """Empty the test database (every key of the store, and its loaded scripts stay)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- what other suites do to a store with SQL, for the Redis store's layout ---------------------
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def age_finished(url: str, ids: list[int], seconds: float) -> None:
    """Make finished jobs look finished `seconds` earlier (their hash and prune's index)."""
    shift = int(seconds * 1_000_000)
    client = _client(url)
    try:
        for job_id in ids:
            key = f"{PREFIX}job:{job_id}"
            status = client.hget(key, "status")
            client.hincrby(key, "finished_at", -shift)
            client.zincrby(f"{PREFIX}finished:{status}", -shift, str(job_id))
    finally:
        client.close()


def leader(url: str, role: str) -> tuple[str] | None:
    """The holder of `role`, as the SQL stores' `leaders` row reads."""
    client = _client(url)
    try:
        holder = client.hget(f"{PREFIX}leader:{role}", "holder")
    finally:
        client.close()
    return None if holder is None else (str(holder),)


def finish_silently(url: str, job_id: int) -> None:
    """Mark a job done behind the store's back: no script, so nothing is published."""
    client = _client(url)
    try:
        now_us = int(time.time() * 1_000_000)
        client.hset(f"{PREFIX}job:{job_id}", mapping={"status": "done", "finished_at": now_us})
    finally:
        client.close()

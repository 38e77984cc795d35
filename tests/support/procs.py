"""Real `conveyor worker` subprocesses for process-level tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Records:
    """Reads the side files the test app writes."""

    path: Path

    def lines(self, suffix: str = "") -> list[list[str]]:
        try:
            text = Path(str(self.path) + suffix).read_text()
        except FileNotFoundError:
            return []
        return [ln.split() for ln in text.splitlines() if ln.strip()]

    def finished(self) -> list[list[str]]:
        return self.lines()

    def started(self) -> list[list[str]]:
        return self.lines(".started")

    def seqs(self) -> list[str]:
        return [ln[0] for ln in self.finished()]


@dataclass
class Workers:
    url: str
    records: Records
    logdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        log = open(self.logdir / f"worker{n}.log", "wb")  # noqa: SIM115 - closed with the process
        full_env = {
            **os.environ,
            "CONVEYOR_TEST_RECORD": str(self.records.path),
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        proc = subprocess.Popen(
            [
                CONVEYOR,
                "worker",
                "--app",
                "tests.support.apps:app",
                "--database-url",
                self.url,
                *args,
            ],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, n: int) -> str:
        return (self.logdir / f"worker{n}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait(10)


@pytest.fixture
def workers(store_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(store_url, Records(tmp_path / "record.txt"), tmp_path)
    yield w
    w.stop_all()

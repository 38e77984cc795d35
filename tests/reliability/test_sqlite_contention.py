"""SQLite under contention: eight processes on one file at once (four `conveyor worker`
processes and four producers, plus operator commands) — nobody sees "database is locked",
and every job runs exactly once.

What makes it so (docs/architecture.md, "SQLite store"): WAL, every write one short
BEGIN IMMEDIATE transaction, busy_timeout 60 s."""

from __future__ import annotations

import collections
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.support.procs import CONVEYOR, ROOT, Records, Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]

PRODUCERS = 4
PER_PRODUCER = 1000
TOTAL = PRODUCERS * PER_PRODUCER
BAD = ("database is locked", "Traceback", "locked", "busy")


@pytest.fixture
def sqlite_workers(sqlite_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(sqlite_url, Records(tmp_path / "record.txt"), tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def producers(sqlite_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONVEYOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_eight_processes_on_one_file_never_see_database_is_locked(
    sqlite_url, sqlite_workers, producers, tmp_path
):
    # Everything starts at once on a file that does not exist yet: the workers and the
    # producers race to create the schema too.
    for n in range(PRODUCERS):
        producers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability.producer",
                    sqlite_url,
                    str(n * PER_PRODUCER),
                    str(PER_PRODUCER),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for _ in range(4):
        sqlite_workers.start("--workers", "4", "--fetch-interval", "0.5", "--log-level", "WARNING")

    # Operators look while it runs.
    looks = []
    while any(p.poll() is None for p in producers):
        looks.append(run_cli("stats", "--database-url", sqlite_url))
        looks.append(run_cli("jobs", "list", "--limit", "50", "--database-url", sqlite_url))
    for look in looks:
        assert look.returncode == 0, look.stderr
        assert not any(b in look.stderr for b in BAD), look.stderr
    assert len(looks) >= 2

    for p in producers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode(errors="replace")
        assert err == b"" and out == b""

    with Conveyor(sqlite_url) as app:

        def done() -> int:
            return sum(q.get("done", 0) for q in app.store.stats().values())

        wait_until(lambda: done() == TOTAL, timeout=120, message=f"all {TOTAL} jobs done")
        stats = app.store.stats()
    assert stats == {"default": {"done": TOTAL}}

    seqs = collections.Counter(sqlite_workers.records.seqs())
    assert len(seqs) == TOTAL and set(seqs.values()) == {1}, "every job ran exactly once"
    assert set(seqs) == {str(n) for n in range(TOTAL)}
    for n in range(len(sqlite_workers.procs)):
        log = sqlite_workers.log(n)
        assert not any(b in log for b in BAD), log
        # no store call failed and had to be retried either
        assert "failed" not in log and "could not" not in log, log
    assert len({ln[1] for ln in sqlite_workers.records.finished()}) == 4, "all four took part"

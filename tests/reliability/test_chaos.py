"""The chaos runner (bench/chaos.py) in short: a few thousand jobs through four real worker
processes that are SIGKILLed and SIGTERMed (and, on PostgreSQL and Redis, the server
restarted twice), then every delivery guarantee of docs/guarantees.md checked from the side records.

The full-size run is `python -m bench.chaos --store sqlite|postgres|redis --jobs 20000`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bench.chaos import Chaos, ChaosConfig, Report, Worker, run_chaos
from conveyor import Conveyor
from conveyor.jobs import Finish
from tests.support.redis import redis_server

JOBS = 3000


def explain(report: Report) -> str:
    return "\n".join([report.summary(), *report.problems])


def assert_survived(report: Report, restarts: int) -> None:
    """Every guarantee held through real faults: kills, SIGTERMs and `restarts` restarts."""
    print(report.summary())
    assert report.ok, explain(report)
    assert report.db_restarts == restarts
    assert report.lost == 0 and report.unattributed == 0 and report.overlaps == 0
    assert report.kills >= 2 and report.terms >= 1, "the run saw real faults"


@pytest.mark.slow
@pytest.mark.process
def test_chaos_on_sqlite_loses_nothing_and_every_duplicate_follows_a_kill(sqlite_url, tmp_path):
    # 3,000 jobs drain in a few seconds: act often enough that every run sees kills, but
    # not so often that replacements starting (a second of CPU each) fill a slow 2-core
    # machine and no worker lives long enough to finish a long job.
    cfg = ChaosConfig(
        store="sqlite",
        url=sqlite_url,
        workdir=tmp_path,
        jobs=JOBS,
        timeout=90,
        action_interval=0.6,
        min_kill_age=1.0,
    )
    report = run_chaos(cfg)
    assert_survived(report, restarts=0)


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.postgres
@pytest.mark.exclusive  # restarts the machine's PostgreSQL: no other test may run meanwhile
def test_chaos_on_postgres_survives_kills_and_two_database_restarts(pg_url, tmp_path):
    # Restarts the PostgreSQL cluster behind pg_url: `exclusive`, so it runs alone.
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster (a local cluster)")
    cfg = ChaosConfig(
        store="postgres", url=pg_url, workdir=tmp_path, jobs=JOBS, db_restarts=2, timeout=100
    )
    report = run_chaos(cfg)
    assert_survived(report, restarts=2)


@pytest.mark.slow
@pytest.mark.process
def test_chaos_on_redis_survives_kills_and_two_server_crashes(tmp_path):
    # A redis-server of the test's own (append-only file, fsync on every write), SIGKILLed
    # and started again twice while the workers are being killed.
    with redis_server() as server:
        cfg = ChaosConfig(
            store="redis",
            url=server.url,
            workdir=tmp_path,
            jobs=JOBS,
            db_restarts=2,
            timeout=100,
            restart=server.restart,
        )
        report = run_chaos(cfg)
    assert_survived(report, restarts=2)


class _Stub:
    """Stands in for a Popen: the checker only reads the pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int:
        return 0


def test_the_checker_catches_losses_unattributed_reruns_and_overlaps(sqlite_url, tmp_path):
    """The chaos checks can fail: feed them a history with each kind of violation."""
    cfg = ChaosConfig(store="sqlite", url=sqlite_url, workdir=tmp_path, jobs=5)
    chaos = Chaos(cfg)
    with Conveyor(sqlite_url) as app:
        jobs = app.enqueue_many([chaos.job_spec(seq) for seq in range(5)])
        finishing_pid = {0: 100, 1: 100, 2: 100, 3: 100, 4: 101}
        for seq, job in enumerate(jobs):
            claimed = app.store.claim(
                worker=f"host-{finishing_pid[seq]}-abc123",
                queues=None,
                limit=1,
                lease=timedelta(seconds=30),
            )
            assert [j.id for j in claimed] == [job.id]
            app.store.finish_many([Finish.done(claimed[0].lease_ref(), str(seq))])
    killed_at = time.time() - 100
    log = tmp_path / "killed.log"
    log.write_text("")
    killed = Worker(_Stub(111), log, 0.0, fate="killed", signalled_at=killed_at)  # type: ignore[arg-type]
    chaos.procs.append(killed)
    t = killed_at - 10
    started = [
        (0, 100, t),  # ran once: fine
        (1, 111, t),  # ran in a process killed before its second run: attributable
        (1, 100, t + 20),
        (2, 100, t),  # ran twice in a live process: not attributable
        (2, 100, t + 1),
        (3, 100, t),  # done in the store, but its run never completed: lost
        (4, 100, t),  # first run still going when the second began: overlap
        (4, 101, t + 1),
    ]
    finished = [(0, 100, t, t + 1), (1, 100, t + 20, t + 21), (2, 100, t + 1, t + 2)]
    finished += [(4, 100, t, t + 5), (4, 101, t + 1, t + 2)]
    Path(f"{chaos.record}.started").write_text("".join(f"{s} {p} {a:.6f}\n" for s, p, a in started))
    chaos.record.write_text("".join(f"{s} {p} {a:.6f} {b:.6f}\n" for s, p, a, b in finished))

    with Conveyor(sqlite_url) as app:
        chaos.verify(app.store)
    report = chaos.report
    assert report.lost == 1, explain(report)
    assert report.duplicates == 3 and report.after_kill == 1 and report.unattributed == 2
    assert report.overlaps == 1
    problems = "\n".join(report.problems)
    assert "lost 1 jobs, e.g. seqs [3]" in problems
    assert "seq 2 started more than once without a kill" in problems
    assert "concurrent double execution: seq 4" in problems
    assert not report.ok


def test_a_worker_that_dies_by_itself_is_a_problem(sqlite_url, tmp_path):
    chaos = Chaos(ChaosConfig(store="sqlite", url=sqlite_url, workdir=tmp_path, jobs=1))
    log = tmp_path / "w.log"
    log.write_text("boom\n")
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    chaos.procs.append(Worker(proc, log, 0.0))
    chaos.start_worker = lambda: None  # type: ignore[assignment,method-assign,return-value]
    chaos.check_processes()
    expected = f"worker pid {proc.pid} exited by itself with code 0 (log {log})"
    assert chaos.report.problems == [expected]

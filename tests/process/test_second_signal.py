"""SPEC §3 graceful shutdown: a second SIGTERM/SIGINT during the wait for running jobs
hands them back at once, in a real `conveyor worker` (and `conveyor serve`), on both
stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.procs import ROOT
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]


def hand_back_on_second_signal(proc, log, producer, job_ids, first, second) -> None:
    proc.send_signal(first)
    wait_until(lambda: "waiting up to 30" in log(), timeout=10, message="graceful wait begun")
    time.sleep(0.5)
    assert proc.poll() is None, "the first signal waits for running jobs"
    proc.send_signal(second)
    sent = time.monotonic()
    code = proc.wait(timeout=10)
    took = time.monotonic() - sent
    assert code == 0, log()
    assert took < 2.0, f"exited {took:.2f}s after the second signal"
    assert "again: handing running jobs back now" in log()
    for job_id in job_ids:
        job = producer.get_job(job_id)
        assert job.status == "pending", job
        assert job.attempts == 0, "the attempt is given back"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_second_signal_hands_running_jobs_back_at_once(workers, producer, second):
    jobs = [
        producer.enqueue("aslow", {"seq": 1, "seconds": 60}),  # async: cancelled
        producer.enqueue("slow", {"seq": 2, "seconds": 60}),  # sync: its thread runs on
    ]
    proc = workers.start("--workers", "2", "--shutdown-timeout", "30", "--fetch-interval", "0.5")
    wait_until(lambda: len(workers.records.started()) == 2, timeout=20, message="jobs started")
    hand_back_on_second_signal(
        proc, lambda: workers.log(0), producer, [j.id for j in jobs], signal.SIGTERM, second
    )
    assert workers.records.finished() == [], "no run completed"


def test_second_signal_hands_back_at_once_in_serve(store_url, producer, tmp_path):
    job = producer.enqueue("aslow", {"seq": 1, "seconds": 60})
    log_path = tmp_path / "serve.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT", "HOST")},
        "PYTHONPATH": str(ROOT),
        "CONVEYOR_TEST_RECORD": str(tmp_path / "record.txt"),
    }
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "serve",
                "--app",
                "tests.support.apps:app",
                "--database-url",
                store_url,
                "--port",
                "0",
                "--shutdown-timeout",
                "30",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: (tmp_path / "record.txt.started").exists(), timeout=20, message="job started"
        )
        hand_back_on_second_signal(
            proc,
            lambda: log_path.read_text(errors="replace"),
            producer,
            [job.id],
            signal.SIGINT,
            signal.SIGTERM,
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

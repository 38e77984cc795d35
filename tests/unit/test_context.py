"""The job context's pure parts: current_job() outside a task, progress checks, and the
Snooze / Retry exceptions (which must survive pickling, for isolated tasks)."""

from __future__ import annotations

import math
import pickle

import pytest

from conveyor import InvalidJob, JobContext, Retry, Snooze, current_job
from conveyor.jobs import Job, JobStatus, utcnow


def a_job() -> Job:
    now = utcnow()
    return Job(
        id=7, type="t", queue="default", payload=None, priority=0, status=JobStatus.PROCESSING,
        attempts=2, max_attempts=5, run_at=now, unique_key=None, result=None, last_error=None,
        worker="w-1", created_at=now, updated_at=now, started_at=now, finished_at=None,
    )  # fmt: skip


def test_current_job_outside_a_task_is_a_lookup_error():
    with pytest.raises(LookupError, match="inside a running task"):
        current_job()


def test_progress_is_checked_and_only_the_latest_is_kept():
    noted: list[JobContext] = []
    ctx = JobContext(a_job(), noted.append)
    for bad in (-0.1, 1.5, math.nan, "half", True):
        with pytest.raises(InvalidJob):
            ctx.progress(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidJob):
        ctx.progress(0.5, 42)  # type: ignore[arg-type]
    ctx.progress(0.25, "a quarter")
    ctx.progress(1, "done\x00")
    assert len(noted) == 2
    assert ctx.take_progress() == (1.0, "done\\x00")
    assert ctx.take_progress() is None


def test_fence_attempt_and_cancel():
    ctx = JobContext(a_job(), lambda _: None)
    assert ctx.attempt == 2 and ctx.fence == "7:2:w-1"
    assert not ctx.cancelled
    ctx.cancel()
    assert ctx.cancelled


def test_snooze_and_retry_check_their_seconds_and_survive_pickling():
    for bad in (-1, math.inf, "5", None):
        with pytest.raises((TypeError, ValueError)):
            Snooze(bad)  # type: ignore[arg-type]
        with pytest.raises((TypeError, ValueError)):
            Retry(in_=bad)  # type: ignore[arg-type]
    snooze = pickle.loads(pickle.dumps(Snooze(30)))
    assert isinstance(snooze, Snooze) and snooze.seconds == 30
    retry = pickle.loads(pickle.dumps(Retry(in_=120, message="partner busy")))
    assert isinstance(retry, Retry) and retry.in_ == 120 and str(retry) == "partner busy"

"""Reach job states through the public store API only, so factories cannot drift."""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.jobs import Job, utcnow
from conveyor.stores import Store
from conveyor.validation import new_job

LEASE = timedelta(seconds=30)


def add(store: Store, type: str = "t", payload: object = None, **fields: object) -> Job:
    return store.enqueue(new_job(type, payload, **fields)).job  # type: ignore[arg-type]


def claim_one(store: Store, worker: str = "w1", now: datetime | None = None, **kw: object) -> Job:
    jobs = store.claim(worker=worker, queues=None, limit=1, lease=LEASE, now=now, **kw)  # type: ignore[arg-type]
    assert len(jobs) == 1, f"expected one job to claim, got {jobs}"
    return jobs[0]


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)

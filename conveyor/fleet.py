"""Fleet observability (SPEC §9): the workers registry's rows, the per-minute aggregates of
finished jobs, and the overview the dashboard polls, built from them.

The stores keep, per queue and minute, how many jobs finished (done), failed for good and
were retried, with the queue wait (run_at → start) and run time (start → finish) of those
attempts counted in fixed log-spaced buckets (BOUNDS): a histogram per minute, summed over
any span, gives p50 and p95 without reading a job. The bucket rule is written three times
(here, SQLite's trigger, PostgreSQL's width_bucket array) and a contract test holds them
together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Upper bounds of the buckets, in seconds: bucket i holds values in [BOUNDS[i-1], BOUNDS[i]),
# bucket 0 those below 1 ms, bucket len(BOUNDS) those of an hour or more.
BOUNDS: tuple[float, ...] = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    *(1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
BUCKETS = len(BOUNDS) + 1
# The overview: finished and failed per minute over this long, percentiles over RECENT.
HOUR_MINUTES = 60
RECENT = timedelta(minutes=5)
# Aggregated minutes are kept this long, then deleted by the reaper's maintenance.
KEEP_MINUTES = timedelta(hours=6)
# A worker is listed until this many lease periods after its last heartbeat (it beats three
# times per lease): a SIGKILLed worker leaves the listing within two lease periods.
LIVE_LEASES = 1.5


def package_version() -> str:
    """The installed package's version ("0" when run from a source tree not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "0"


def bucket(seconds: float) -> int:
    """The bucket of a duration: how many bounds are at or below it."""
    return sum(1 for bound in BOUNDS if bound <= seconds)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process in the registry."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None  # None: every queue
    slots: int
    busy: int
    version: str
    started_at: datetime
    last_heartbeat: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": None if self.queues is None else list(self.queues),
            "slots": self.slots,
            "busy": self.busy,
            "started_at": self.started_at.isoformat(),
            "last_heartbeat": self.last_heartbeat.isoformat(),
            "version": self.version,
        }


@dataclass(frozen=True)
class MinuteStats:
    """Attempts that ended in one minute (all queues) with one pair of buckets."""

    minute: datetime
    wait_bucket: int
    run_bucket: int
    finished: int
    failed: int
    retried: int

    @property
    def attempts(self) -> int:
        return self.finished + self.failed + self.retried


def percentile(histogram: Sequence[int], fraction: float) -> float | None:
    """The value below which `fraction` of a bucket histogram lies, interpolated inside
    its bucket (geometrically: the buckets are log-spaced); None when it is empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = BOUNDS[index - 1] if index > 0 else BOUNDS[0] / 2
            high = BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1] * 2
            share = (rank - seen) / count
            return round(float(low * (high / low) ** share), 6)
        seen += count
    return BOUNDS[-1] * 2


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def overview(
    counts: dict[str, dict[str, int]],
    minutes: Iterable[MinuteStats],
    workers: Sequence[WorkerInfo],
    now: datetime,
) -> dict[str, Any]:
    """GET /overview's JSON (SPEC §9) from the store's counts, aggregates and registry."""
    this_minute = minute_of(now)
    first = this_minute - timedelta(minutes=HOUR_MINUTES - 1)
    series = {first + timedelta(minutes=i): [0, 0, 0] for i in range(HOUR_MINUTES)}
    wait = [0] * BUCKETS
    run = [0] * BUCKETS
    recent = this_minute - RECENT + timedelta(minutes=1)
    for row in minutes:
        slot = series.get(row.minute)
        if slot is not None:
            slot[0] += row.finished
            slot[1] += row.failed
            slot[2] += row.retried
        if row.minute >= recent:
            wait[row.wait_bucket] += row.attempts
            run[row.run_bucket] += row.attempts
    return {
        "queues": counts,
        "per_minute": [
            {"minute": minute.isoformat(), "finished": f, "failed": x, "retried": r}
            for minute, (f, x, r) in series.items()
        ],
        "queue_wait": {"p50": percentile(wait, 0.5), "p95": percentile(wait, 0.95)},
        "run_time": {"p50": percentile(run, 0.5), "p95": percentile(run, 0.95)},
        "workers": {
            "live": len(workers),
            "slots": sum(w.slots for w in workers),
            "busy": sum(w.busy for w in workers),
        },
        "generated_at": now.isoformat(),
    }

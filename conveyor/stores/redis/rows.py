"""Redis hashes → Conveyor's records. Every value arrives as text; "" stands for None."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from conveyor import jsontext
from conveyor.fleet import MinuteStats, WorkerInfo
from conveyor.jobs import POLICIES, STATUSES, Job, JobStatus, QueueSettings, RateLimit
from conveyor.payloads import decode
from conveyor.periodic import PeriodicState
from conveyor.stores.redis.scripts import from_us


def _text(value: str | None) -> str | None:
    return None if value is None or value == "" else value


def ids(text: str | None) -> tuple[int, ...]:
    """A job's dependencies as the scripts keep them: "1,2" ("" none)."""
    return tuple(int(i) for i in text.split(",")) if text else ()


def job(h: Mapping[str, str]) -> Job:
    """The job in hash `h` (enqueue.lua lays it out)."""
    started, finished, progress = h["started_at"], h["finished_at"], h.get("progress", "")
    return Job(
        id=int(h["id"]),
        type=h["type"],
        queue=h["queue"],
        payload=decode(h["payload"]),
        priority=int(h["priority"]),
        status=STATUSES[h["status"]],
        attempts=int(h["attempts"]),
        max_attempts=int(h["max_attempts"]),
        run_at=from_us(h["run_at"]),
        unique_key=_text(h["unique_key"]),
        result=decode(h["result"]),
        last_error=_text(h["last_error"]),
        worker=_text(h["worker"]),
        created_at=from_us(h["created_at"]),
        updated_at=from_us(h["updated_at"]),
        started_at=from_us(started) if started else None,
        finished_at=from_us(finished) if finished else None,
        progress=float(progress) if progress else None,
        progress_message=_text(h.get("progress_message")),
        concurrency_key=_text(h["concurrency_key"]),
        depends_on=ids(h.get("depends_on")),
        on_dependency_failure=POLICIES[h["on_dependency_failure"]],
        trace_context=_text(h["trace_context"]),
    )


def job_of(flat: Sequence[str]) -> Job:
    """The job in a hash as a script returns it (HGETALL: field, value, field, ...)."""
    it = iter(flat)
    return job(dict(zip(it, it, strict=True)))


def queue(name: str, h: Mapping[str, str], now_us: int) -> QueueSettings:
    """A queue's settings hash (fleet.lua's `queue` op); a backoff that has passed is None."""
    rate, until = h.get("rate_count", ""), h.get("paused_until", "")
    return QueueSettings(
        name=name,
        concurrency=int(h["concurrency"]) if h.get("concurrency") else None,
        rate_limit=RateLimit(int(rate), int(h["rate_period"])) if rate else None,
        key_concurrency=int(h["key_concurrency"]) if h.get("key_concurrency") else None,
        fair=h.get("fair") == "1",
        paused=h.get("paused") == "1",
        paused_until=from_us(until) if until and int(until) > now_us else None,
    )


def worker_json(worker: WorkerInfo) -> str:
    """A registry row's fixed part; started_at and last_heartbeat are kept beside it."""
    queues = None if worker.queues is None else list(worker.queues)
    values = (worker.id, worker.host, worker.pid, queues, worker.slots, worker.busy)
    return jsontext.dumps([*values, worker.version])


def worker(text: str, started_at: str, last_heartbeat: str) -> WorkerInfo:
    """A registry row: `worker_json`'s text and the times kept beside it."""
    id, host, pid, queues, slots, busy, version = cast(list[Any], jsontext.loads(text))
    return WorkerInfo(
        id=str(id),
        host=str(host),
        pid=int(pid),
        queues=None if queues is None else tuple(queues),
        slots=int(slots),
        busy=int(busy),
        version=str(version),
        started_at=from_us(started_at),
        last_heartbeat=from_us(last_heartbeat),
    )


def periodic(h: Mapping[str, str], last_job_status: str | None) -> PeriodicState:
    last_tick, last_job = h.get("last_tick"), h.get("last_job_id")
    return PeriodicState(
        name=h["name"],
        schedule=h["schedule"],
        timezone=h["timezone"],
        since=from_us(h["since"]),
        last_tick=from_us(last_tick) if last_tick else None,
        last_job_id=int(last_job) if last_job else None,
        last_job_status=JobStatus(last_job_status) if last_job_status else None,
        updated_at=from_us(h.get("updated_at") or h["since"]),
    )


def minutes(minute: int, h: Mapping[str, str]) -> list[MinuteStats]:
    """One aggregated minute's hash ("wait:run:outcome" → count) as rows by bucket pair."""
    rows: dict[tuple[int, int], dict[str, int]] = {}
    for field, n in h.items():
        wait, run, outcome = field.split(":")
        rows.setdefault((int(wait), int(run)), {})[outcome] = int(n)
    at = from_us(minute * 60_000_000)
    return [
        MinuteStats(
            minute=at,
            wait_bucket=wait,
            run_bucket=run,
            finished=counts.get("f", 0),
            failed=counts.get("x", 0),
            retried=counts.get("r", 0),
        )
        for (wait, run), counts in sorted(rows.items())
    ]

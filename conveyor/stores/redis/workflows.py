"""Enqueue arguments for the store's script, and the plan of a batch with dependencies
(SPEC §8). The plan is conveyor/dependencies.py's, as on the other stores; it is made here
from a read of the store, and the script inserts the batch only if what it was made from
still holds (its checks), so the plan and the insert are one transaction in effect."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from conveyor import dependencies
from conveyor.dependencies import Dependency
from conveyor.jobs import STATUSES, JobStatus, NewJob
from conveyor.stores.redis.scripts import PREFIX, to_us

Read = Callable[[Sequence[tuple[str, ...]]], list[Any]]
NO_PLAN = dependencies.Plan((), None, 0)


def job_args(job: NewJob, id: int | None = None, plan: dependencies.Plan = NO_PLAN,
             depends_on: Sequence[int] = ()) -> list[object]:  # fmt: skip
    """One job's FIELDS arguments of enqueue.lua."""
    return [
        job.type,
        job.payload_json,
        job.queue,
        job.priority,
        job.max_attempts,
        "" if job.run_at is None else to_us(job.run_at),
        job.unique_key or "",
        job.concurrency_key or "",
        job.on_dependency_failure.value,
        job.trace_context or "",
        "" if id is None else id,
        ",".join(map(str, depends_on)),
        ",".join(map(str, plan.waiting_on)),
        plan.depth,
        plan.cancelled_by or "",
    ]


def plain_args(jobs: Sequence[NewJob]) -> list[object]:
    """The arguments of jobs without dependencies (the script numbers them itself)."""
    return [arg for job in jobs for arg in job_args(job)]


def _class(status: str | None) -> str:
    """What a plan reads of a dependency's status: unfinished, done, failed or cancelled,
    missing."""
    if status is None:
        return "m"
    if status in ("pending", "processing"):
        return "u"
    return "d" if status == "done" else "x"


def _read_facts(
    jobs: Sequence[NewJob], read: Read
) -> tuple[dict[int, Dependency], dict[str, int], list[object]]:
    """The dependencies and unique_key holders the batch's plan rests on, and the script's
    checks that they still hold."""
    existing = sorted({d for job in jobs for d in job.depends_on})
    keys = sorted({job.unique_key for job in jobs if job.unique_key is not None})
    replies = read([("HGET", f"{PREFIX}unique", key) for key in keys])
    holders = {key: int(h) for key, h in zip(keys, replies, strict=True) if h is not None}
    wanted = sorted({*existing, *holders.values()})
    fields = read([("HMGET", f"{PREFIX}job:{i}", "status", "depth") for i in wanted])
    found: dict[int, Dependency] = {}
    checks: list[object] = []
    for job_id, (status, depth) in zip(wanted, fields, strict=True):
        if status is not None:
            found[job_id] = Dependency(STATUSES[status], int(depth or 0))
        if job_id in existing:
            checks += ["s", job_id, _class(status)]
    for key in keys:
        checks += ["u", key, holders.get(key, "")]
    return found, holders, [len(checks) // 3, *checks]


def plan_batch(jobs: Sequence[NewJob], ids: Sequence[int], read: Read) -> list[object]:
    """The enqueue op's arguments for a batch with dependencies, job i under `ids[i]`:
    InvalidJob for a dependency that does not exist or a chain too deep."""
    known, held, args = _read_facts(jobs, read)
    inserted: list[int] = []  # the id each item ends up as (its own, or its key's holder)
    for job, job_id in zip(jobs, ids, strict=True):
        key = job.unique_key
        if key is not None and key in held:  # the script returns the holder
            inserted.append(held[key])
            args += job_args(job, job_id)
            continue
        deps = sorted({*job.depends_on, *(inserted[i] for i in job.depends_on_items)})
        plan = NO_PLAN
        if deps:
            found = {d: known[d] for d in deps if d in known}
            plan = dependencies.plan(tuple(deps), found, job.on_dependency_failure)
        known[job_id] = Dependency(plan.status, plan.depth)
        if key is not None and plan.status is JobStatus.PENDING:
            held[key] = job_id
        inserted.append(job_id)
        args += job_args(job, job_id, plan, deps)
    return args

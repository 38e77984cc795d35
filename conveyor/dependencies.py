"""Dependencies between jobs (SPEC §8): what a new job's dependencies mean for it, decided
once here for both stores. The stores lock the dependencies, read their statuses and depths,
and insert the job as `plan` says; a trigger in each store settles the dependents of a job
when it finishes (docs/architecture.md, "Workflows")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from conveyor.errors import InvalidJob
from conveyor.jobs import JobStatus, OnDependencyFailure

# SQLite settles a failure's cascade with one nested trigger per level of dependents, and
# stops at 1000 levels; one limit for both stores keeps them one contract.
MAX_DEPENDENCY_DEPTH = 500
MAX_DEPENDENCIES = 10_000  # per job: a fan-in of thousands of parents, not an unbounded list

# The run_at of a job still waiting for dependencies: past every claim's range (claims read
# due jobs only), and far enough from year 9999 that no time zone carries it out of range.
WAITING_RUN_AT = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Dependency:
    """A dependency of a job being enqueued, as the store read it under lock."""

    status: JobStatus
    depth: int


@dataclass(frozen=True, slots=True)
class Plan:
    """How to insert a job with dependencies."""

    waiting_on: tuple[int, ...]  # the unfinished dependencies: the job waits for these
    cancelled_by: str | None  # last_error when a dependency already ended badly ("cancel")
    depth: int

    @property
    def status(self) -> JobStatus:
        return JobStatus.CANCELLED if self.cancelled_by is not None else JobStatus.PENDING


def plan(
    depends_on: tuple[int, ...],
    found: Mapping[int, Dependency],
    policy: OnDependencyFailure,
) -> Plan:
    """Raises InvalidJob for a dependency that does not exist or a chain too deep."""
    missing = [i for i in depends_on if i not in found]
    if missing:
        raise InvalidJob(f"depends_on: no job {missing[0]}")
    depth = 1 + max(dep.depth for dep in found.values())  # a job without dependencies: 0
    if depth >= MAX_DEPENDENCY_DEPTH:  # a chain of depth + 1 jobs
        raise InvalidJob(
            f"depends_on: a chain of dependencies may be at most {MAX_DEPENDENCY_DEPTH} jobs deep"
        )
    if policy is OnDependencyFailure.CANCEL:
        for job_id in depends_on:
            status = found[job_id].status
            if status in (JobStatus.FAILED, JobStatus.CANCELLED):
                return Plan((), f"dependency {job_id} ended {status.value}", depth)
    waiting = tuple(
        job_id
        for job_id in depends_on
        if found[job_id].status in (JobStatus.PENDING, JobStatus.PROCESSING)
    )
    return Plan(waiting, None, depth)

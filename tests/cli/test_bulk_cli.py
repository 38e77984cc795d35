"""`conveyor jobs retry --status …` and `conveyor jobs cancel --status …` (SPEC §8 bulk
actions) through real subprocesses, on each store: {"count": N} on stdout; a JOB_ID and a
filter together, neither, or a bad filter is one line and exit 2, with nothing changed."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from conveyor.jobs import Finish, Job, JobFilter
from conveyor.stores import Store
from conveyor.validation import new_job
from tests.cli.test_cli import assert_one_line_error, run

LEASE = timedelta(seconds=30)


def add(store: Store, n: int, queue: str = "q", type: str = "reverse") -> list[Job]:
    return [store.enqueue(new_job(type, "x", queue=queue, max_attempts=1)).job for _ in range(n)]


def snapshot(store: Store) -> dict[int, dict[str, Any]]:
    return {job.id: job.to_json() for job in store.list_jobs(JobFilter(limit=1000))}


def test_bulk_cancel_then_retry_round_trip(store_url, store):
    target = add(store, 4, queue="q")
    other = add(store, 2, queue="r")
    cancelled = run("jobs", "cancel", "--status", "pending", "--queue", "q", url=store_url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"count": 4}
    assert {store.get_job(job.id).status for job in target} == {"cancelled"}
    assert {store.get_job(job.id).status for job in other} == {"pending"}
    retried = run("jobs", "retry", "--status", "cancelled", "--type", "reverse", url=store_url)
    assert json.loads(retried.stdout) == {"count": 4}
    assert {store.get_job(job.id).status for job in target} == {"pending"}
    # one job by id, as before
    one = run("jobs", "cancel", str(other[0].id), url=store_url)
    assert json.loads(one.stdout)["status"] == "cancelled"


def test_bulk_retry_of_failed_jobs_created_before(store_url, store):
    early = add(store, 3)
    late = add(store, 2)
    claimed = store.claim(worker="w", queues=["q"], limit=5, lease=LEASE)
    store.finish_many([Finish.failed(job.lease_ref(), "boom") for job in claimed])
    cutoff = late[0].created_at.isoformat()
    retried = run("jobs", "retry", "--status", "failed", "--created-before", cutoff, url=store_url)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {"count": 3}
    assert {store.get_job(job.id).status for job in early} == {"pending"}
    assert {store.get_job(job.id).status for job in late} == {"failed"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["jobs", "retry"], "give a JOB_ID, or --status"),
        (["jobs", "cancel", "1", "--status", "pending"], "either a JOB_ID or --status"),
        (["jobs", "cancel", "--queue", "q"], "--status is required"),
        (["jobs", "retry", "--status", "bogus"], "retry applies to failed or cancelled jobs"),
        (["jobs", "retry", "--status", "pending"], "retry applies to failed or cancelled jobs"),
        (["jobs", "cancel", "--status", "failed"], "cancel applies to pending or processing"),
        (["jobs", "cancel", "--status", "pending", "--created-before", "soon"], "ISO 8601"),
        (
            ["jobs", "cancel", "--status", "pending", "--created-before", "2030-01-01"],
            "timezone",
        ),
        (["jobs", "cancel", "--status", "pending", "--queue", ""], "queue must be 1 to 200"),
    ],
)
def test_bad_bulk_commands_exit_2_with_one_line_and_change_nothing(
    store_url, store, args, fragment
):
    add(store, 2)
    before = snapshot(store)
    proc = run(*args, url=store_url)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_one_line_error(proc, fragment)
    assert proc.stdout == ""
    assert snapshot(store) == before


def test_help_says_status_is_required_for_a_bulk_action():
    for action, statuses in (("retry", "failed or cancelled"), ("cancel", "pending or processing")):
        proc = run("jobs", action, "--help")
        text = " ".join(proc.stdout.split())
        assert proc.returncode == 0
        assert f"--status is required for that: there is no {action} of every job" in text
        assert statuses in text and '{"count": N}' in text and "[JOB_ID]" in text

"""Retention (SPEC §7) in real `conveyor worker` processes, on both stores: finished jobs of
each status go once they are older than their option says (`0` and `forever` keep them),
exactly the others remain, one process of the fleet prunes at a time, and running jobs are
not disturbed."""

from __future__ import annotations

import collections
import re
import signal
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import timedelta

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.jobs import Finish, JobStatus
from conveyor.stores import Store
from conveyor.validation import new_job
from tests.support import redis as redis_support
from tests.support.factories import LEASE
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

FAST = ["--fetch-interval", "0.5"]
HOUR = 3600
DAY = 86400


@contextmanager
def sql(url: str) -> Iterator[tuple[object, str]]:
    """A direct connection to the store and its parameter style ('?' or '%s')."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            yield conn, "?"
            conn.commit()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            yield pg, "%s"


def leader_row(url: str) -> tuple[str, ...] | None:
    if url.startswith("redis"):
        return redis_support.leader(url, "retention")
    with sql(url) as (conn, p):
        return conn.execute(  # type: ignore[attr-defined, no-any-return]
            f"SELECT holder FROM leaders WHERE role = {p}", ("retention",)
        ).fetchone()


def age(url: str, ids: Sequence[int], seconds: float) -> None:
    """Make jobs look finished `seconds` earlier than they did."""
    if url.startswith("redis"):
        redis_support.age_finished(url, list(ids), seconds)
        return
    with sql(url) as (conn, p):
        if p == "?":
            conn.execute(  # type: ignore[attr-defined]
                "UPDATE jobs SET finished_at = finished_at - ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (int(seconds * 1_000_000), str(list(ids))),
            )
        else:
            conn.execute(  # type: ignore[attr-defined]
                "UPDATE jobs SET finished_at = finished_at - %s WHERE id = ANY(%s)",
                (timedelta(seconds=seconds), list(ids)),
            )


def finished(store: Store, status: JobStatus, n: int, *, ago: float, url: str) -> set[int]:
    """n jobs that ended `status` `ago` seconds ago, through the store's own transitions."""
    jobs = [r.job for r in store.enqueue_many([new_job("record", {"seq": -1})] * n)]
    ids = [job.id for job in jobs]
    if status == JobStatus.CANCELLED:
        for job_id in ids:
            store.cancel(job_id)
    else:
        claimed = store.claim(worker="setup", queues=None, limit=n, lease=LEASE)
        assert sorted(j.id for j in claimed) == sorted(ids)
        outcome = Finish.done if status == JobStatus.DONE else Finish.failed
        args = () if status == JobStatus.DONE else ("boom",)
        store.finish_many([outcome(j.lease_ref(), *args) for j in claimed])  # type: ignore[operator]
    age(url, ids, ago)
    return set(ids)


def remaining(app: Conveyor, ids: set[int]) -> set[int]:
    return {i for i in ids if app.get_job(i) is not None}


def total(app: Conveyor) -> int:
    return sum(n for per_queue in app.stats().values() for n in per_queue.values())


def pruned_lines(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if "retention: pruned" in ln]


def test_each_status_is_kept_as_long_as_its_option_says(workers, producer, store_url):
    store = producer.store
    done_old = finished(store, JobStatus.DONE, 2500, ago=2 * HOUR, url=store_url)  # 3 batches
    done_recent = finished(store, JobStatus.DONE, 3, ago=30 * 60, url=store_url)
    cancelled_old = finished(store, JobStatus.CANCELLED, 4, ago=1000 * DAY, url=store_url)
    failed_old = finished(store, JobStatus.FAILED, 4, ago=1000 * DAY, url=store_url)
    failed_recent = finished(store, JobStatus.FAILED, 2, ago=60, url=store_url)
    newest = producer.enqueue("record", {"seq": 1}).id
    workers.start(
        "--retain-done", "1h", "--retain-cancelled", "forever", "--retain-failed", "0", *FAST
    )
    line = wait_until(lambda: pruned_lines(workers.log(0)), timeout=30, message="a prune")
    assert "pruned 2500 finished jobs (2500 done)" in line[0], line
    everything = done_old | done_recent | cancelled_old | failed_old | failed_recent
    assert remaining(producer, everything) == done_recent | cancelled_old | failed_old | (
        failed_recent
    )
    wait_until(lambda: producer.get_job(newest).status == "done", timeout=15)
    assert "leads pruning (done 1h, cancelled forever, failed forever)" in workers.log(0)


def test_defaults_and_environment_variables(workers, producer, store_url):
    """RETAIN_FAILED from the environment; done and cancelled at SPEC's default, 1d."""
    store = producer.store
    kept = finished(store, JobStatus.DONE, 2, ago=23 * HOUR, url=store_url)
    kept |= finished(store, JobStatus.CANCELLED, 2, ago=23 * HOUR, url=store_url)
    kept |= finished(store, JobStatus.FAILED, 2, ago=1.5 * DAY, url=store_url)
    gone = finished(store, JobStatus.DONE, 2, ago=25 * HOUR, url=store_url)
    gone |= finished(store, JobStatus.CANCELLED, 2, ago=25 * HOUR, url=store_url)
    gone |= finished(store, JobStatus.FAILED, 2, ago=3 * DAY, url=store_url)
    producer.enqueue("record", {"seq": 1})
    workers.start(*FAST, env={"RETAIN_FAILED": "2d"})
    line = wait_until(lambda: pruned_lines(workers.log(0)), timeout=30, message="a prune")
    assert "pruned 6 finished jobs (2 done, 2 cancelled, 2 failed)" in line[0], line
    assert remaining(producer, kept | gone) == kept
    assert "(done 1d, cancelled 1d, failed 2d)" in workers.log(0)


@pytest.mark.slow
def test_one_process_prunes_at_a_time_and_running_jobs_go_on(workers, producer, store_url):
    """Two workers with a 3 s retention (a round every second): one leads round after round
    while the other never does, a job runs through the pruning and every job runs exactly
    once; when the leader stops it gives the role up and the other takes over."""
    store = producer.store
    old = finished(store, JobStatus.DONE, 3000, ago=DAY, url=store_url)
    old |= finished(store, JobStatus.FAILED, 5, ago=DAY, url=store_url)
    running = producer.enqueue("aslow", {"seq": 0, "seconds": 5}).id
    options = ["--retain-done", "3s", "--retain-cancelled", "3s", "--retain-failed", "3s"]
    workers.start("--workers", "4", *options, *FAST)
    workers.start("--workers", "4", *options, *FAST)
    wait_until(lambda: workers.records.started(), timeout=15, message="the slow job started")
    for start in range(1, 301, 50):  # work keeps arriving while the backlog is pruned
        producer.enqueue_many(
            [{"type": "record", "payload": {"seq": i}} for i in range(start, start + 50)]
        )
    # looked at first: 3 s after it ends, the slow job is pruned in its turn
    job = wait_until(
        lambda: (j := producer.get_job(running)) is not None and j.status == "done" and j,
        timeout=20,
        message="the slow job done",
    )
    assert job.attempts == 1 and job.last_error is None, "the running job was not disturbed"
    wait_until(lambda: not remaining(producer, old), timeout=30, message="the old jobs pruned")
    wait_until(lambda: len(workers.records.finished()) == 301, timeout=30, message="all ran")
    seqs = collections.Counter(workers.records.seqs())
    assert len(seqs) == 301 and set(seqs.values()) == {1}, "each job ran exactly once"
    # the jobs that ran here are pruned 3 s after they finished, by the same leader (SQLite
    # keeps its newest row: ids are max(id) + 1)
    left = 1 if store_url.startswith("sqlite") else 0
    wait_until(lambda: total(producer) == left, timeout=30, message="every finished job pruned")

    logs = [workers.log(0), workers.log(1)]
    leads = [re.findall(r"retention: (\S+) leads pruning", log) for log in logs]
    assert sorted(len(found) for found in leads) == [0, 1], leads
    leader = 0 if leads[0] else 1
    holder = leads[leader][0]
    assert leader_row(store_url) == (holder,)
    assert len(pruned_lines(logs[leader])) >= 2, "the leader pruned round after round"
    assert not pruned_lines(logs[1 - leader]), "the other process never pruned"
    for log in logs:
        assert "recovered" not in log and "lease lost" not in log, log

    # the leader stops: it gives the role up, and the other process takes it
    workers.procs[leader].send_signal(signal.SIGTERM)
    assert workers.procs[leader].wait(30) == 0
    successor = wait_until(
        lambda: re.findall(r"retention: (\S+) leads pruning", workers.log(1 - leader)),
        timeout=15,
        message="the other worker took over",
    )
    assert leader_row(store_url) == (successor[0],)

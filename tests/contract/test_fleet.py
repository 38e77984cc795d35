"""Contract: the workers registry, the exact counts by queue and status, and the per-minute
aggregates (SPEC §9), on both stores."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from conveyor import Conveyor, fleet
from conveyor.fleet import WorkerInfo
from conveyor.jobs import BulkFilter, Finish, JobFilter, JobStatus, utcnow
from conveyor.stores import Store
from conveyor.validation import new_job
from tests.support.factories import LEASE, add, claim_one


def _worker(worker_id: str, busy: int = 0, queues: tuple[str, ...] | None = None) -> WorkerInfo:
    now = utcnow()
    return WorkerInfo(worker_id, "host-a", 4242, queues, 8, busy, "1.2.3", now, now)


def test_workers_register_beat_and_leave(store: Store):
    lease = timedelta(seconds=10)
    first = _worker("w-1", queues=("a", "b"))
    store.register_worker(first, lease=lease)
    store.register_worker(_worker("w-2"), lease=lease)
    listed = store.list_workers()
    assert [w.id for w in listed] == ["w-1", "w-2"]
    one = listed[0]
    assert (one.host, one.pid, one.queues, one.slots, one.busy, one.version) == (
        "host-a",
        4242,
        ("a", "b"),
        8,
        0,
        "1.2.3",
    )
    assert listed[1].queues is None
    assert abs((one.started_at - first.started_at).total_seconds()) < 0.001

    # a heartbeat renews busy and last_heartbeat; started_at stays the first one's
    later = utcnow() + timedelta(seconds=5)
    store.register_worker(_worker("w-1", busy=3), lease=lease, now=later)
    beat = store.list_workers()[0]
    assert beat.busy == 3
    assert beat.last_heartbeat > one.last_heartbeat
    assert abs((beat.started_at - first.started_at).total_seconds()) < 0.001

    store.unregister_worker("w-2")
    assert [w.id for w in store.list_workers()] == ["w-1"]


def test_a_silent_worker_leaves_the_listing_and_the_reaper_deletes_it(store: Store):
    lease = timedelta(seconds=10)
    store.register_worker(_worker("gone"), lease=lease)
    store.register_worker(_worker("alive"), lease=timedelta(seconds=60))
    deadline = lease * fleet.LIVE_LEASES
    assert [w.id for w in store.list_workers(now=utcnow() + deadline * 0.9)] == ["alive", "gone"]
    past = utcnow() + deadline + timedelta(seconds=1)
    assert [w.id for w in store.list_workers(now=past)] == ["alive"]
    store.recover_expired(now=past)  # the reapers' pass deletes the row itself
    assert [w.id for w in store.list_workers()] == ["alive"]


def _truth(store: Store) -> dict[str, dict[str, int]]:
    """Counts by queue and status, counted from the jobs themselves."""
    counted = Counter(
        (job.queue, job.status.value) for job in store.list_jobs(JobFilter(limit=1000))
    )
    out: dict[str, dict[str, int]] = {}
    for (queue, status), n in counted.items():
        out.setdefault(queue, {})[status] = n
    return out


def test_counts_stay_exact_through_every_transition(store: Store):
    def check() -> None:
        assert store.stats() == _truth(store)

    for queue in ("a", "a", "a", "a", "b", "b", "b"):
        add(store, queue=queue, max_attempts=1)
    store.enqueue_many([new_job("t", None, queue="c") for _ in range(6)])
    check()
    done, failed, retried = (claim_one(store) for _ in range(3))
    store.complete(done.lease_ref())
    store.fail(failed.lease_ref(), "boom", retry_at=None)
    store.fail(retried.lease_ref(), "again", retry_at=utcnow())
    check()
    finishing = claim_one(store)  # done in the statement (transaction) of the next claim
    outcome = [Finish.done(finishing.lease_ref())]
    store.finish_and_claim(outcome, worker="w", queues=["c"], limit=1, lease=LEASE)
    check()
    store.retry(failed.id)  # failed → pending
    check()
    pending = add(store, queue="b")
    store.cancel(pending.id)
    running = claim_one(store)
    store.cancel(running.id)  # processing → cancelled, lease kept until the run stops
    check()
    store.retry(pending.id)  # cancelled → pending
    check()
    store.bulk_cancel(BulkFilter(status=JobStatus.PENDING, queue="c"), pause=0)
    check()
    store.bulk_retry(BulkFilter(status=JobStatus.CANCELLED, queue="c"), pause=0)
    check()
    # max_attempts 1: the recovery fails it for good
    [expiring] = store.claim(worker="w", queues=["b"], limit=1, lease=timedelta(seconds=1))
    store.recover_expired(now=utcnow() + timedelta(seconds=5))
    assert store.get_job(expiring.id).status == JobStatus.FAILED  # type: ignore[union-attr]
    check()
    # a dependency that fails cancels its dependent; a new dependent is inserted cancelled
    parent = add(store, queue="d", max_attempts=1)
    add(store, queue="d", depends_on=[parent.id])
    store.cancel(parent.id)
    add(store, queue="d", depends_on=[parent.id])
    check()
    assert store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1)) > 0
    check()


_ORIGIN_MINUTES = 30  # the attempts below end this many minutes ago and later


def _attempt(store: Store, wait: float, run: float, outcome: str, minute: int) -> datetime:
    """One attempt of a job in its own queue that started `wait` s after its run_at, ran
    `run` s and ended as `outcome`, in the `minute`-th minute after the origin; returns the
    minute it ended in."""
    origin = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=_ORIGIN_MINUTES)
    start = origin + timedelta(minutes=minute, seconds=10)
    queue = f"q{minute}"
    add(store, queue=queue, run_at=start - timedelta(seconds=wait))
    [job] = store.claim(worker="w", queues=[queue], limit=1, lease=LEASE, now=start)
    ref, later = job.lease_ref(), utcnow() + timedelta(hours=1)
    finish = {
        "done": Finish.done(ref),
        "failed": Finish.failed(ref, "boom"),
        "retried": Finish.retry(ref, "again", later),
        "snoozed": Finish.snoozed(ref, later),
    }[outcome]
    ended = start + timedelta(seconds=run)
    assert store.finish_many([finish], now=ended)
    return ended.replace(second=0, microsecond=0)


def test_minute_aggregates_count_ended_attempts_by_bucket(store: Store):
    cases = [  # wait, run, outcome: each in a minute of its own
        (0.0004, 0.001, "done"),
        (0.0015, 0.25, "failed"),
        (1.0, 3.0, "retried"),
        (45.0, 0.5, "done"),
        (7200.0, 400.0, "done"),
        (2.0, 2.0, "snoozed"),  # the attempt is given back: not an ended attempt
    ]
    for minute, (wait, run, outcome) in enumerate(cases):
        _attempt(store, wait, run, outcome, minute)
    since = utcnow() - timedelta(minutes=_ORIGIN_MINUTES + 1)
    rows = sorted(store.minute_stats(since), key=lambda r: r.minute)
    ended = [case for case in cases if case[2] != "snoozed"]
    assert len(rows) == len(ended)
    origin = rows[0].minute
    for row, (wait, run, outcome) in zip(rows, ended, strict=True):
        minute = cases.index((wait, run, outcome))
        end = origin + timedelta(minutes=minute, seconds=10 + run)
        assert row.minute == fleet.minute_of(end)
        assert (row.wait_bucket, row.run_bucket) == (fleet.bucket(wait), fleet.bucket(run))
        assert (row.finished, row.failed, row.retried) == (
            outcome == "done",
            outcome == "failed",
            outcome == "retried",
        )
    # a recovery with attempts left is a retried attempt, in the minute it happened
    add(store, queue="r")
    store.claim(worker="w", queues=["r"], limit=1, lease=timedelta(seconds=1))
    store.recover_expired(now=utcnow() + timedelta(seconds=5))
    recent = store.minute_stats(utcnow() - timedelta(minutes=1))
    assert sum(r.retried for r in recent) == 1
    # maintenance deletes the minutes older than it keeps, and only those
    assert store.compact_stats(keep=timedelta(minutes=10)) == 5
    assert sum(r.retried for r in store.minute_stats(since)) == 1


def test_oldest_pending_per_queue(store: Store):
    now = utcnow()
    add(store, queue="a", run_at=now - timedelta(minutes=5))
    add(store, queue="a", run_at=now - timedelta(minutes=1))
    add(store, queue="b", run_at=now + timedelta(minutes=5))  # not due: not waiting yet
    oldest = store.oldest_pending()
    assert list(oldest) == ["a"]
    assert abs((oldest["a"] - (now - timedelta(minutes=5))).total_seconds()) < 0.001


def test_overview_from_aggregates_and_registry(store: Store, store_url: str):
    ended = _attempt(store, 0.3, 1.5, "done", _ORIGIN_MINUTES - 2)
    add(store, queue="waiting")
    store.register_worker(_worker("w-1", busy=2), lease=timedelta(seconds=30))
    with Conveyor(store_url) as app:
        view = app.overview()
    minutes = view["per_minute"]
    assert len(minutes) == 60
    # by its minute, not its place: the clock's minute may turn between writing and reading
    assert [m["minute"] for m in minutes if m["finished"]] == [ended.isoformat()]
    assert sum(m["finished"] for m in minutes) == 1
    assert view["queues"] == store.stats()
    assert view["queue_wait"]["p50"] is not None
    assert 0.2 <= view["queue_wait"]["p50"] <= 0.5
    assert 1.0 <= view["run_time"]["p95"] <= 2.0
    assert view["workers"] == {"live": 1, "slots": 8, "busy": 2}

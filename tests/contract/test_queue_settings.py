"""Contract: queue settings in the store (SPEC §7) and the jobs' concurrency_key, on every
store. The limits' effect on claims is tests/contract/test_claim*.py's; here: what is stored,
read back and listed, and who is woken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from conveyor.jobs import Finish, JobFilter, QueueSettings, RateLimit, utcnow
from conveyor.stores import Store, open_store
from conveyor.validation import new_job, queue_changes
from tests.support.factories import add, claim_one


def names(store: Store) -> list[str]:
    return [queue.name for queue in store.list_queues()]


# -- concurrency_key on every enqueue path -------------------------------------------------------
def test_concurrency_key_is_stored_and_read_back(store):
    keyed = add(store, "t", 1, queue="payments", concurrency_key="tenant-42")
    plain = add(store, "t", 2, queue="payments")
    assert keyed.concurrency_key == "tenant-42"
    assert plain.concurrency_key is None
    assert store.get_job(keyed.id).concurrency_key == "tenant-42"
    assert store.get_job(plain.id).concurrency_key is None
    assert store.get_job(keyed.id).to_json()["concurrency_key"] == "tenant-42"
    listed = {job.id: job.concurrency_key for job in store.list_jobs(JobFilter())}
    assert listed == {keyed.id: "tenant-42", plain.id: None}
    # the claim returns it (the worker and fair share see it)
    claimed = claim_one(store)
    assert claimed.id == keyed.id and claimed.concurrency_key == "tenant-42"


def test_concurrency_key_with_a_unique_key(store):
    first = add(store, "t", unique_key="ORD-1", concurrency_key="a")
    again = store.enqueue(new_job("t", unique_key="ORD-1", concurrency_key="b"))
    assert first.concurrency_key == "a"
    assert not again.created
    assert again.job.id == first.id and again.job.concurrency_key == "a"  # the holder's own


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-batch", "keyed-batch"])
def test_concurrency_key_in_batches(store, keyed):
    jobs = [
        new_job(
            "t",
            i,
            concurrency_key=None if i % 3 == 0 else f"tenant-{i % 2}",
            unique_key=f"u{i}" if keyed and i % 2 else None,
        )
        for i in range(12)
    ]
    results = store.enqueue_many(jobs)
    expected = [None if i % 3 == 0 else f"tenant-{i % 2}" for i in range(12)]
    assert [r.job.concurrency_key for r in results] == expected
    assert [store.get_job(r.job.id).concurrency_key for r in results] == expected
    for result in results:
        assert store.get_job(result.job.id) == result.job


def test_concurrency_key_holds_any_text(store):
    for key in ("é✓ tenant/42", "k" * 255, "a'b\"c", "\\u0000"):
        job = add(store, concurrency_key=key)
        assert store.get_job(job.id).concurrency_key == key


# -- list_queues ------------------------------------------------------------------------------
def test_no_queues_in_an_empty_store(store):
    assert store.list_queues() == []


def test_queues_with_unfinished_jobs_are_listed_with_default_settings(store):
    add(store, queue="b")
    add(store, queue="a")
    add(store, queue="a")
    claim_one(store)  # one of them processing
    assert store.list_queues() == [QueueSettings("a"), QueueSettings("b")]
    for queue in store.list_queues():
        assert queue.counts is None  # the facade adds counts (Conveyor.queues)
        assert queue.to_json() == {
            "name": queue.name,
            "concurrency": None,
            "rate_limit": None,
            "key_concurrency": None,
            "fair": False,
            "paused": False,
            "paused_until": None,
        }


def test_a_queue_whose_jobs_all_finished_is_listed_only_once_configured(store):
    job = add(store, queue="done-only")
    claimed = claim_one(store)
    assert claimed.id == job.id
    store.finish_many([Finish.done(claimed.lease_ref())])
    cancelled = add(store, queue="cancelled-only")
    store.cancel(cancelled.id)
    assert names(store) == []  # unfinished jobs or settings, on every store alike
    store.configure_queue("done-only")
    assert names(store) == ["done-only"]


def test_configured_queues_are_listed_without_jobs(store):
    store.configure_queue("z", concurrency=3)
    store.pause_queue("m")
    store.resume_queue("r")
    store.hold_queue("h", utcnow() + timedelta(seconds=60))
    add(store, queue="j")
    assert names(store) == ["h", "j", "m", "r", "z"]


def test_names_are_listed_by_code_point_whatever_the_collation(store):
    for name in ("b", "B", "a", "é", "Z", "a/b", "reports eu"):
        store.configure_queue(name)
    assert names(store) == sorted(["b", "B", "a", "é", "Z", "a/b", "reports eu"])


def test_many_queues_and_jobs(store):
    store.enqueue_many([new_job("t", i, queue=f"q{i % 50:02d}") for i in range(1000)])
    assert names(store) == [f"q{i:02d}" for i in range(50)]


# -- configure_queue ----------------------------------------------------------------------------
def test_configure_sets_only_what_is_given(store):
    configured = store.configure_queue(
        "payments", **queue_changes({"concurrency": 2, "rate_limit": "10/s", "key_concurrency": 1})
    )
    assert configured == QueueSettings(
        "payments", concurrency=2, rate_limit=RateLimit(10, 1), key_concurrency=1
    )
    assert configured.to_json()["rate_limit"] == "10/s"
    # only fair changes
    fair = store.configure_queue("payments", fair=True)
    assert (fair.concurrency, fair.rate_limit, fair.key_concurrency, fair.fair) == (
        2,
        RateLimit(10, 1),
        1,
        True,
    )
    # None clears one limit, the others stay
    cleared = store.configure_queue("payments", rate_limit=None)
    assert (cleared.concurrency, cleared.rate_limit, cleared.key_concurrency, cleared.fair) == (
        2,
        None,
        1,
        True,
    )
    # nothing given: nothing changes
    assert store.configure_queue("payments") == cleared
    assert store.list_queues() == [cleared]


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", RateLimit(10, 1)), ("600/m", RateLimit(600, 60)), ("5000/h", RateLimit(5000, 3600))],
)
def test_rate_limits_round_trip(store, text, rate):
    assert store.configure_queue("q", **queue_changes({"rate_limit": text})).rate_limit == rate
    (listed,) = store.list_queues()
    assert listed.rate_limit == rate and str(listed.rate_limit) == text


def test_largest_limits_fit(store):
    big = 999_999_999
    queue = store.configure_queue(
        "q", concurrency=big, key_concurrency=big, rate_limit=RateLimit(big, 3600)
    )
    assert (queue.concurrency, queue.key_concurrency, queue.rate_limit) == (
        big,
        big,
        RateLimit(big, 3600),
    )
    assert store.list_queues() == [queue]


def test_configure_keeps_pause_and_backoff(store):
    until = utcnow() + timedelta(seconds=60)
    store.pause_queue("q")
    store.hold_queue("q", until)
    queue = store.configure_queue("q", concurrency=1)
    assert queue.paused and queue.paused_until == until


def test_settings_survive_a_new_store_object(store, store_url):
    store.configure_queue("q", concurrency=4, fair=True)
    other = open_store(store_url)
    try:
        assert other.list_queues() == [QueueSettings("q", concurrency=4, fair=True)]
    finally:
        other.close()


# -- pause, resume, hold ---------------------------------------------------------------------
def test_pause_and_resume(store):
    add(store, queue="payments")
    paused = store.pause_queue("payments")
    assert paused == QueueSettings("payments", paused=True)
    assert store.pause_queue("payments") == paused  # twice: still paused
    assert store.list_queues() == [paused]
    resumed = store.resume_queue("payments")
    assert resumed == QueueSettings("payments")
    assert store.resume_queue("payments") == resumed
    assert store.list_queues() == [resumed]


def test_pause_keeps_the_limits(store):
    store.configure_queue("q", concurrency=2, key_concurrency=1)
    assert store.pause_queue("q") == QueueSettings(
        "q", concurrency=2, key_concurrency=1, paused=True
    )
    assert store.resume_queue("q") == QueueSettings("q", concurrency=2, key_concurrency=1)


def test_hold_keeps_the_later_deadline(store):
    later = (utcnow() + timedelta(seconds=60)).replace(microsecond=123456)
    sooner = later - timedelta(seconds=30)
    held = store.hold_queue("q", sooner)
    assert held.paused_until == sooner and not held.paused
    assert store.hold_queue("q", later).paused_until == later
    assert store.hold_queue("q", sooner).paused_until == later  # an earlier one never shortens
    (listed,) = store.list_queues()
    assert listed.paused_until == later
    assert listed.to_json()["paused_until"] == later.isoformat()


def test_a_backoff_that_has_passed_reads_as_none(store):
    held = store.hold_queue("q", utcnow() - timedelta(seconds=1))
    assert held.paused_until is None
    assert store.list_queues() == [QueueSettings("q")]
    # and a new one is set whatever the old one was
    until = utcnow() + timedelta(seconds=60)
    assert store.hold_queue("q", until).paused_until == until


def test_resume_ends_the_backoff_and_the_pause(store):
    store.pause_queue("q")
    store.hold_queue("q", utcnow() + timedelta(seconds=60))
    assert store.resume_queue("q") == QueueSettings("q")
    assert store.list_queues() == [QueueSettings("q")]


def test_pause_does_not_touch_jobs(store):
    jobs = [add(store, queue="q", concurrency_key="k") for _ in range(3)]
    before = [store.get_job(job.id) for job in jobs]
    store.pause_queue("q")
    store.configure_queue("q", concurrency=1)
    store.hold_queue("q", utcnow() + timedelta(seconds=5))
    store.resume_queue("q")
    assert [store.get_job(job.id) for job in jobs] == before


def test_queues_are_independent(store):
    store.configure_queue("a", concurrency=1)
    store.pause_queue("b")
    store.hold_queue("c", utcnow() + timedelta(seconds=60))
    a, b, c = store.list_queues()
    assert (a.concurrency, a.paused, a.paused_until) == (1, False, None)
    assert (b.concurrency, b.paused, b.paused_until) == (None, True, None)
    assert (c.concurrency, c.paused) == (None, False) and c.paused_until is not None


# -- wake-ups -----------------------------------------------------------------------------------
def seconds_to_wake(store: Store, store_url: str, change: Callable[[Store], object]) -> float:
    """How long a worker waiting on `store`'s notifier takes to hear of `change`, made by
    another process's store (a second store on the same URL)."""

    async def scenario() -> float:
        notifier = store.notifier()
        await notifier.start()
        other = open_store(store_url)
        try:
            other.ping()
            await asyncio.sleep(0.05)
            while await notifier.wait(0.05):  # drain anything from before
                pass
            started = time.monotonic()
            await asyncio.to_thread(change, other)
            assert await notifier.wait(5.0), "no wake-up"
            return time.monotonic() - started
        finally:
            other.close()
            await notifier.stop()

    return asyncio.run(scenario())


@pytest.mark.parametrize("change", ["resume", "configure"])
def test_a_resume_or_a_new_limit_wakes_idle_workers_of_other_processes(store, store_url, change):
    """A worker waiting on its notifier hears of the change (another process's store) within
    milliseconds, so a resumed queue's jobs start at once, not at the next FETCH_INTERVAL."""
    store.pause_queue("q")
    add(store, queue="q")
    changes: dict[str, Callable[[Store], object]] = {
        "resume": lambda other: other.resume_queue("q"),
        "configure": lambda other: other.configure_queue("q", concurrency=5),
    }
    assert seconds_to_wake(store, store_url, changes[change]) < 1.0


@pytest.mark.parametrize("path", ["finish", "finish_and_claim"])
def test_a_run_ending_in_a_limited_queue_wakes_idle_workers_of_other_processes(
    store, store_url, path
):
    """The slot a run frees in a limited queue is taken at once by a waiting worker of
    another process, when the statement that ends the run does not take it itself (a plain
    finish; a claim that does not serve that queue or whose lock another claim holds)."""
    store.configure_queue("q", concurrency=1)
    add(store, queue="q")
    add(store, queue="q")
    running = claim_one(store)
    done = Finish.done(running.lease_ref(), "null")

    def end_the_run(other: Store) -> None:
        if path == "finish":
            other.finish_many([done])
        else:
            other.finish_and_claim(
                [done], worker=running.worker or "", queues=["elsewhere"], limit=1,
                lease=timedelta(seconds=30),
            )  # fmt: skip

    assert seconds_to_wake(store, store_url, end_the_run) < 1.0
    assert len(store.claim(worker="w2", queues=["q"], limit=5, lease=timedelta(seconds=30))) == 1


def test_the_statement_that_ends_a_run_in_a_limited_queue_takes_its_slot(store):
    store.configure_queue("q", concurrency=1, key_concurrency=1)
    store.configure_queue("plain", concurrency=1)
    for queue, key in [("q", "k"), ("q", "k"), ("plain", None), ("plain", None)]:
        add(store, queue=queue, concurrency_key=key)
    running = store.claim(worker="w1", queues=None, limit=5, lease=timedelta(seconds=30))
    assert sorted(job.queue for job in running) == ["plain", "q"]
    _, claimed = store.finish_and_claim(
        [Finish.done(job.lease_ref(), "null") for job in running],
        worker="w1", queues=None, limit=5, lease=timedelta(seconds=30),
    )  # fmt: skip
    assert sorted(job.queue for job in claimed) == ["plain", "q"]

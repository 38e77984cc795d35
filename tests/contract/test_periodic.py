"""Contract: the periodic-job compare-and-set (SPEC §7). A tick's job is inserted only by the
call that moves the schedule's last_tick forward to it, in the same transaction, so a tick
is enqueued once however many processes offer it, also after its job has finished and freed
its unique_key (which alone would let a late process enqueue the tick again)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta

import pytest

from conveyor.jobs import JobFilter, JobStatus, utcnow
from conveyor.periodic import Periodic, Schedule, unique_key
from conveyor.stores import Store, open_store
from conveyor.validation import new_job
from tests.support.factories import claim_one

# whole seconds in the past, so that the ticks' jobs are due and can be claimed
BASE = utcnow().replace(microsecond=0) - timedelta(hours=1)


def every_second(name: str = "beat", **job: object) -> Periodic:
    return Periodic(
        name, Schedule.parse("* * * * * *"), new_job("beat", job.pop("payload", None), **job)
    )  # type: ignore[arg-type]


def at(seconds: int) -> datetime:
    return BASE + timedelta(seconds=seconds)


def jobs_of(store: Store, type: str = "beat") -> list:
    return [j for j in store.list_jobs(JobFilter(limit=1000)) if j.type == type]


@pytest.fixture
def beat(store: Store) -> Periodic:
    periodic = every_second()
    store.register_periodic([periodic], now=BASE)
    return periodic


def test_register_creates_one_row_per_schedule(store):
    nightly = Periodic("nightly", Schedule.parse("0 3 * * *", "Europe/Berlin"), new_job("x", None))
    rows = store.register_periodic([every_second(), nightly], now=BASE)
    assert [(r.name, r.schedule, r.timezone) for r in rows] == [
        ("beat", "* * * * * *", "UTC"),
        ("nightly", "0 3 * * *", "Europe/Berlin"),
    ]
    assert all(r.since == BASE and r.last_tick is None and r.last_job_id is None for r in rows)
    assert store.list_periodic() == rows


def test_registering_again_keeps_the_row_a_changed_schedule_counts_from_then(store, beat):
    store.enqueue_periodic(beat, at(5))
    (same,) = store.register_periodic([beat], now=at(100))
    assert same.since == BASE and same.last_tick == at(5), "unchanged: nothing written"
    hourly = Periodic("beat", Schedule.parse("0 * * * *"), beat.job)
    (changed,) = store.register_periodic([hourly], now=at(100))
    assert (changed.schedule, changed.since) == ("0 * * * *", at(100))
    assert changed.last_tick == at(5), "last_tick only ever moves forward"
    assert store.enqueue_periodic(hourly, at(50)) is None, "before the change: never enqueued"
    zoned = Periodic("beat", Schedule.parse("0 * * * *", "Asia/Tokyo"), beat.job)
    (rezoned,) = store.register_periodic([zoned], now=at(200))
    assert (rezoned.timezone, rezoned.since) == ("Asia/Tokyo", at(200))


def test_the_first_offer_of_a_tick_enqueues_its_job(store, beat):
    result = store.enqueue_periodic(beat, at(1))
    assert result is not None and result.created
    job = result.job
    assert (job.type, job.status, job.run_at) == ("beat", JobStatus.PENDING, at(1))
    assert job.unique_key == f"periodic:beat:{at(1).isoformat()}"
    assert job.unique_key.endswith("+00:00")
    assert store.get_job(job.id) == job
    (row,) = store.list_periodic()
    assert (row.last_tick, row.last_job_id, row.last_job_status) == (
        at(1),
        job.id,
        JobStatus.PENDING,
    )


def test_the_same_tick_or_an_earlier_one_is_refused(store, beat):
    assert store.enqueue_periodic(beat, at(10)) is not None
    assert store.enqueue_periodic(beat, at(10)) is None
    assert store.enqueue_periodic(beat, at(9)) is None
    assert store.enqueue_periodic(beat, at(11)) is not None
    assert [j.unique_key for j in jobs_of(store)] == [
        unique_key("beat", at(11)),
        unique_key("beat", at(10)),
    ]
    assert store.list_periodic()[0].last_tick == at(11)


def test_a_tick_before_since_is_refused(store):
    periodic = every_second()
    store.register_periodic([periodic], now=at(10))
    assert store.enqueue_periodic(periodic, at(9)) is None
    assert store.enqueue_periodic(periodic, at(10)) is not None, "since itself may be a tick"
    assert len(jobs_of(store)) == 1


def test_a_finished_ticks_job_does_not_let_the_tick_be_enqueued_again(store, beat):
    first = store.enqueue_periodic(beat, at(1))
    assert first is not None
    job = claim_one(store)
    assert job.id == first.job.id
    assert store.complete(job.lease_ref())
    # The unique_key is free again: an ordinary enqueue with it would succeed...
    # ...but the compare-and-set refuses the tick, on every store.
    assert store.enqueue_periodic(beat, at(1)) is None
    assert store.enqueue_periodic(beat, at(0)) is None
    assert [j.id for j in jobs_of(store)] == [first.job.id]
    (row,) = store.list_periodic()
    assert row.last_job_status == JobStatus.DONE


def test_the_job_takes_the_template_of_the_periodic_job(store):
    periodic = every_second(payload={"report_id": 7}, queue="reports", priority=3, max_attempts=2)
    store.register_periodic([periodic], now=BASE)
    result = store.enqueue_periodic(periodic, at(1))
    assert result is not None
    stored = store.get_job(result.job.id)
    assert (stored.payload, stored.queue, stored.priority, stored.max_attempts) == (
        {"report_id": 7},
        "reports",
        3,
        2,
    )


def test_a_schedule_without_a_row_gets_one(store):
    periodic = every_second("unregistered")
    assert store.enqueue_periodic(periodic, at(3)) is not None
    (row,) = store.list_periodic()
    assert (row.name, row.since, row.last_tick) == ("unregistered", at(3), at(3))
    assert store.enqueue_periodic(periodic, at(2)) is None


def test_an_unfinished_job_holding_the_ticks_key_stands_for_the_tick(store, beat):
    holder = store.enqueue(new_job("beat", None, unique_key=unique_key("beat", at(1)))).job
    result = store.enqueue_periodic(beat, at(1))
    assert result is not None and not result.created and result.job.id == holder.id
    (row,) = store.list_periodic()
    assert (row.last_tick, row.last_job_id) == (at(1), holder.id)
    assert len(jobs_of(store)) == 1


def test_the_last_jobs_status_is_none_once_it_was_pruned(store, beat):
    result = store.enqueue_periodic(beat, at(1))
    assert result is not None
    store.complete(claim_one(store).lease_ref())
    store.enqueue(new_job("other", None))  # SQLite keeps the newest row: not the tick's
    assert store.prune(older_than=timedelta(0), now=utcnow() + timedelta(seconds=1)) == 1
    assert store.get_job(result.job.id) is None
    (row,) = store.list_periodic()
    assert (row.last_job_id, row.last_job_status, row.last_tick) == (result.job.id, None, at(1))
    assert store.enqueue_periodic(beat, at(1)) is None, "the row still guards the tick"


def test_schedules_are_independent(store, beat):
    other = every_second("other")
    store.register_periodic([other], now=BASE)
    assert store.enqueue_periodic(beat, at(1)) is not None
    assert store.enqueue_periodic(other, at(1)) is not None
    assert sorted(j.unique_key for j in jobs_of(store)) == [
        unique_key("beat", at(1)),
        unique_key("other", at(1)),
    ]


TICKS = 40


def test_threads_offering_the_same_ticks_enqueue_each_once(store, store_url, beat):
    won: list[datetime] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def offer() -> None:
        own = open_store(store_url)  # its own connections, as another process would have
        try:
            barrier.wait()
            for n in range(TICKS):
                if own.enqueue_periodic(beat, at(n)) is not None:
                    won.append(at(n))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=offer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(won) == [at(n) for n in range(TICKS)], "every tick won exactly once"
    keys = [j.unique_key for j in jobs_of(store)]
    assert sorted(keys) == sorted(unique_key("beat", at(n)) for n in range(TICKS))


def _offer_from_a_process(url: str, base: str, start_at: float) -> list[str]:
    """In another process: offer the ticks of `beat`, return those this process won."""
    store = open_store(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        periodic = every_second()
        ticks = [datetime.fromisoformat(base) + timedelta(seconds=n) for n in range(TICKS)]
        return [tick.isoformat() for tick in ticks if store.enqueue_periodic(periodic, tick)]
    finally:
        store.close()


def test_processes_offering_the_same_ticks_enqueue_each_once(store, store_url, beat):
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=spawn) as pool:
        start_at = time.time() + 2.0  # all four have started by then
        futures = [
            pool.submit(_offer_from_a_process, store_url, BASE.isoformat(), start_at)
            for _ in range(4)
        ]
        won = [tick for f in futures for tick in f.result(timeout=120)]
    assert sorted(won) == sorted(at(n).isoformat() for n in range(TICKS))
    assert len(won) == len(set(won)) == len(jobs_of(store)) == TICKS

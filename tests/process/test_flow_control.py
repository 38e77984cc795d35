"""Queue settings enforced by the store, across several real worker processes, on both
stores (SPEC §7): concurrency, key_concurrency, rate_limit, pause/resume, the fleet-wide
backoff of Snooze(queue=True), and fair share. Each limit is judged by what ran: the tasks'
own start/end records, or the stored start times."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from conveyor import Conveyor
from conveyor.jobs import JobStatus
from tests.support.procs import Workers
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

WORKER = ["--workers", "4", "--fetch-interval", "0.5"]
FAIR_BOUND = 400  # starts until B's last job: see the fair-share test


def start_workers(workers: Workers, n: int = 3, *args: str) -> None:
    for _ in range(n):
        workers.start(*WORKER, *args)


def all_done(app: Conveyor, ids: list[int], timeout: float = 60) -> None:
    def done() -> bool:
        return all(app.get_job(i).status == JobStatus.DONE for i in ids)

    wait_until(done, timeout=timeout, message=f"{len(ids)} jobs done")


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def spans_by_seq(workers: Workers) -> dict[int, tuple[float, float]]:
    return {int(ln[0]): (float(ln[2]), float(ln[3])) for ln in workers.records.finished()}


def test_concurrency_holds_across_the_fleet_and_the_queue_drains(workers, producer):
    producer.configure_queue("narrow", concurrency=2)
    jobs = producer.enqueue_many(
        [{"type": "slow", "payload": {"seq": n, "seconds": 0.03}, "queue": "narrow"}
         for n in range(200)]
    )  # fmt: skip
    others = producer.enqueue_many(
        [{"type": "slow", "payload": {"seq": 1000 + n, "seconds": 0.03}} for n in range(40)]
    )
    start_workers(workers)
    all_done(producer, [j.id for j in jobs + others])
    spans = spans_by_seq(workers)
    assert most_at_once([spans[n] for n in range(200)]) <= 2
    # the unlimited queue was not held back by it: its jobs ran more than two at once
    assert most_at_once([spans[1000 + n] for n in range(40)]) > 2


def test_key_concurrency_holds_per_key_while_keys_overlap(workers, producer):
    producer.configure_queue("tenants", key_concurrency=1)
    jobs = producer.enqueue_many(
        [{"type": "slow", "payload": {"seq": key * 100 + n, "seconds": 0.1},
          "queue": "tenants", "concurrency_key": f"tenant-{key}"}
         for key in range(3) for n in range(10)]
    )  # fmt: skip
    start_workers(workers)
    all_done(producer, [j.id for j in jobs])
    spans = spans_by_seq(workers)
    per_key: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for seq, span in spans.items():
        per_key[seq // 100].append(span)
    assert all(most_at_once(s) == 1 for s in per_key.values()), "one at a time per key"
    assert most_at_once(list(spans.values())) > 1, "different keys ran side by side"


def test_rate_limit_holds_in_every_window(workers, producer):
    producer.configure_queue("metered", rate_limit="10/s")
    jobs = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": n}, "queue": "metered"} for n in range(50)]
    )
    start_workers(workers)
    all_done(producer, [j.id for j in jobs])
    starts = sorted(producer.get_job(j.id).started_at.timestamp() for j in jobs)
    worst = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert worst <= 10, f"{worst} starts in one second"
    assert starts[-1] - starts[0] >= 4.0, "50 jobs at 10/s take over 4 s"


def test_pause_holds_a_queue_while_others_run_and_resume_releases_it(workers, producer):
    producer.pause_queue("paused")
    held = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": n}, "queue": "paused"} for n in range(5)]
    )
    others = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": 100 + n}} for n in range(5)]
    )
    start_workers(workers)
    all_done(producer, [j.id for j in others])
    time.sleep(1.0)  # the paused queue's jobs had every chance to start: none may have
    assert all(producer.get_job(j.id).status == JobStatus.PENDING for j in held)
    resumed_at = time.time()
    producer.resume_queue("paused")
    all_done(producer, [j.id for j in held], timeout=10)
    first = min(producer.get_job(j.id).started_at.timestamp() for j in held)
    assert first - resumed_at < 1.0, f"first start {first - resumed_at:.2f}s after resume"


def test_snooze_with_its_queue_holds_the_queue_on_every_worker(workers, producer):
    snoozer = producer.enqueue("queue_snoozer", {"seq": 1, "seconds": 2}, queue="partner",
                               priority=10)  # fmt: skip
    start_workers(workers)

    def held_until():
        [queue] = [q for q in producer.queues() if q.name == "partner"]
        return queue.paused_until

    until = wait_until(held_until, timeout=15, message="the queue is held").timestamp()
    queued = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": 10 + n}, "queue": "partner"} for n in range(10)]
    )
    others = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": 100 + n}} for n in range(10)]
    )
    all_done(producer, [j.id for j in [snoozer, *queued, *others]], timeout=20)
    partner_starts = [producer.get_job(j.id).started_at.timestamp() for j in queued]
    assert min(partner_starts) >= until - 0.001, "a job of the held queue started early"
    other_starts = [producer.get_job(j.id).started_at.timestamp() for j in others]
    assert max(other_starts) < until, "the other queue ran while the partner queue was held"
    final = producer.get_job(snoozer.id)
    assert final.status == JobStatus.DONE and final.attempts == 1


def starts_until_last_b(app: Conveyor, a_ids: list[int], b_ids: list[int], since: float) -> int:
    """B's jobs plus A's started after `since` (B committed by then) up to the last of B's:
    the place of B's last job in the order of starts once B could be seen. A's started while
    B's insert was still being committed are not counted: on a loaded machine the producer
    may stall there while the workers start a hundred of A's."""
    b_starts = [app.get_job(i).started_at.timestamp() for i in b_ids]  # type: ignore[union-attr]
    last_b = max(b_starts)
    a_starts = 0
    for job_id in a_ids:
        started = app.get_job(job_id).started_at
        if started is not None and since <= started.timestamp() <= last_b:
            a_starts += 1
    return len(b_ids) + a_starts


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "not-fair"])
def test_fair_share_serves_a_small_tenant_beside_a_big_one(fair, workers, producer):
    producer.configure_queue("shared", fair=fair)
    big = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": n}, "queue": "shared", "concurrency_key": "A"}
         for n in range(1500)]
    )  # fmt: skip
    for _ in range(2):
        workers.start(*WORKER)
    wait_until(lambda: len(workers.records.finished()) >= 200, timeout=30, message="A runs")
    small = producer.enqueue_many(
        [{"type": "record", "payload": {"seq": 10_000 + n}, "queue": "shared",
          "concurrency_key": "B"} for n in range(50)]
    )  # fmt: skip
    since = time.time()
    all_done(producer, [j.id for j in small], timeout=60)
    position = starts_until_last_b(producer, [j.id for j in big], [j.id for j in small], since)
    print(f"fair={fair}: B's 50 jobs all started within the first {position} starts")
    # First come, first served puts B after the ~1,300 A's left (1,320-1,345 seen); a fair
    # queue interleaves the keys (75-110 alone, up to 182 beside a full test run on 2 cores,
    # where claims come one or two jobs at a time): 400 tells the two apart with room either side.
    if fair:
        assert position <= FAIR_BOUND, position
    else:
        assert position > FAIR_BOUND, position

"""Lease renewal keeps each claim apart from a later claim of the same job in the same
process (SPEC §1; docs/guarantees.md G3). An operator cancels a running job and retries it;
once the cancelled run has stopped and its lease ended, this very process may claim the
retry. What the heartbeat learnt about the cancelled run, and the end of its lease, must
then leave the new run alone: stopping it, or no longer renewing its lease, lets the job
be recovered and started a third time beside it. Real stores, the real heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from conveyor.jobs import Finish, JobStatus, LeaseRef, Renewal
from conveyor.stores import Store
from conveyor.validation import new_job
from conveyor.worker.leases import Leases

LEASE = timedelta(seconds=30)


@pytest.fixture
def running(store: Store) -> Iterator[LeaseRef]:
    """A job claimed by worker "w", then cancelled and retried by an operator: its first
    run still holds the lease."""
    store.enqueue(new_job("t", {}))
    (job,) = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    store.cancel(job.id)
    assert store.retry(job.id).status == JobStatus.PENDING
    yield job.lease_ref()


def retry_taken(store: Store, leases: Leases, first: LeaseRef) -> LeaseRef:
    """The cancelled run stops and its lease ends; this process claims the retry."""
    store.finish_many([Finish.ended(first)])
    (job,) = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
    assert job.attempts == first.attempt + 1
    second = job.lease_ref()
    leases.hold(second, until=float("inf"))
    return second


async def settle() -> None:
    for _ in range(3):  # the callbacks come through call_soon_threadsafe
        await asyncio.sleep(0)


def test_the_cancelled_run_is_told_to_stop(store: Store, running: LeaseRef) -> None:
    async def main() -> list[LeaseRef]:
        stopped: list[LeaseRef] = []
        leases = Leases(store, lease=LEASE.total_seconds(), on_lost=print, on_stop=stopped.append)
        leases._loop = asyncio.get_running_loop()
        leases.hold(running, until=float("inf"))
        await asyncio.to_thread(leases.renew)
        await settle()
        return stopped

    assert asyncio.run(main()) == [running]


def test_a_stale_report_never_stops_the_retry_this_process_took(
    store: Store, running: LeaseRef
) -> None:
    heartbeat = store.heartbeat
    taken: list[LeaseRef] = []

    async def main() -> tuple[list[LeaseRef], list[LeaseRef]]:
        stopped: list[LeaseRef] = []
        lost: list[LeaseRef] = []
        leases = Leases(
            store, lease=LEASE.total_seconds(), on_lost=lost.append, on_stop=stopped.append
        )

        def judged_then_retry_taken(refs, **kwargs) -> Renewal:  # type: ignore[no-untyped-def]
            renewal = heartbeat(refs, **kwargs)  # "stop": the first run's job is pending
            taken.append(retry_taken(store, leases, running))  # meanwhile, on the loop
            return renewal

        store.heartbeat = judged_then_retry_taken  # type: ignore[method-assign]
        leases._loop = asyncio.get_running_loop()
        leases.hold(running, until=float("inf"))
        await asyncio.to_thread(leases.renew)
        await settle()
        assert leases.refs() == taken, "the retry's lease is still renewed"
        return stopped, lost

    stopped, lost = asyncio.run(main())
    assert (stopped, lost) == ([], [])
    assert len(taken) == 1


def test_the_end_of_the_cancelled_run_keeps_renewing_the_retry(
    store: Store, running: LeaseRef
) -> None:
    leases = Leases(store, lease=LEASE.total_seconds(), on_lost=print, on_stop=print)
    leases.hold(running, until=float("inf"))
    second = retry_taken(store, leases, running)
    leases.drop(running)  # the write of the first run's end is acknowledged late
    assert leases.refs() == [second]
    leases.drop(second)
    assert leases.refs() == []

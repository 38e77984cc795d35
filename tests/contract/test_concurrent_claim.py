"""Contract: concurrent claims never hand one job to two workers."""

from __future__ import annotations

import threading

from conveyor.jobs import JobFilter
from conveyor.stores import open_store
from conveyor.validation import new_job
from tests.support.factories import LEASE


def test_threads_claim_disjoint_sets_covering_the_backlog(store, store_url):
    store.enqueue_many([new_job("t", i) for i in range(400)])
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        own = open_store(store_url)  # its own connections, as a separate worker would have
        mine: list[int] = []
        try:
            while True:
                jobs = own.claim(worker=name, queues=None, limit=7, lease=LEASE)
                if not jobs:
                    break
                mine += [j.id for j in jobs]
                own.finish_many([])
        except BaseException as exc:
            errors.append(exc)
        finally:
            claimed[name] = mine
            own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    all_ids = [i for ids in claimed.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 400
    assert {j.id for j in store.list_jobs(JobFilter(limit=1000))} == set(all_ids)

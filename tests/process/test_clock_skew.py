"""A worker whose wall clock runs 60 s ahead or behind never recovers another worker's live
job, nor has its own recovered (docs/guarantees.md, clock steps): SQLite lease deadlines
follow the host's boot-time clock, PostgreSQL's the database's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.jobs import JobStatus, utcnow
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

# A 3 s lease (renewed every second): with 2 s, one job ran twice in a full test run beside
# another on 2 cores, most likely a renewal starved past its lease, whatever the clocks.
LEASE = ["--lease", "3", "--fetch-interval", "0.5", "--workers", "2"]
JOBS, SECONDS = 4, 7  # one run each on 2 x 2 slots, each outliving two leases


@pytest.mark.parametrize("skew", [60, -60], ids=["ahead", "behind"])
def test_a_worker_with_a_skewed_clock_never_recovers_live_jobs(skew, workers, producer):
    # due well before either clock's now, so both workers claim them
    past = utcnow() - timedelta(minutes=5)
    jobs = [
        producer.enqueue("slow", {"seq": n, "seconds": SECONDS}, run_at=past) for n in range(JOBS)
    ]
    workers.start(*LEASE)
    workers.start(
        *LEASE,
        "--app",
        "tests.support.skewed_app:app",
        env={"CONVEYOR_TEST_CLOCK_SKEW": str(skew)},
    )

    def all_done() -> bool:
        return all(producer.get_job(j.id).status == JobStatus.DONE for j in jobs)

    wait_until(all_done, timeout=60, message="every job done")
    for job in jobs:
        final = producer.get_job(job.id)
        assert final.attempts == 1 and final.last_error is None, final
    starts = [ln[0] for ln in workers.records.started()]
    assert sorted(starts) == sorted(str(n) for n in range(JOBS)), "each job started once"
    assert len({ln[1] for ln in workers.records.started()}) == 2, "both workers ran jobs"
    for n in range(2):
        assert "recovered" not in workers.log(n), workers.log(n)

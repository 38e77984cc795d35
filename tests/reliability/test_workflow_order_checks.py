"""The chaos runner's workflow checks (bench/chaos.py --workflow) can fail: a diamond run
through the store for real, then side records that show a dependent starting before its
dependency ended, a run recorded under another job's id, and a plan the stored edges do
not match. Both stores: the checks read `depends_on`, `started_at` and `finished_at` back."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from bench.chaos import Chaos, ChaosConfig
from conveyor import Conveyor
from conveyor.jobs import Finish, Job
from conveyor.stores import Store

PID = 100
WORKER = f"host-{PID}-abc123"


def run_in_order(store: Store, jobs: list[Job]) -> None:
    """Claim and finish the diamond level by level: each claim takes exactly the jobs whose
    dependencies are done, so the store's timestamps are in dependency order."""
    for level in ([0], [1, 2], [3]):
        claimed = store.claim(worker=WORKER, queues=None, limit=10, lease=timedelta(seconds=30))
        assert sorted(j.id for j in claimed) == [jobs[i].id for i in level]
        finishes = []
        for job in claimed:
            assert isinstance(job.payload, dict)
            finishes.append(Finish.done(job.lease_ref(), str(job.payload["seq"])))
        store.finish_many(finishes)


def diamond_chaos(url: str, workdir: Path) -> tuple[Chaos, list[Job]]:
    chaos = Chaos(ChaosConfig(store="any", url=url, workdir=workdir, jobs=4, workflow=True))
    chaos.deps, chaos.workflow_starts = [(), (0,), (0,), (1, 2)], {0}
    with Conveyor(url) as app:
        jobs = app.enqueue_many([chaos.job_spec(seq) for seq in range(4)])
        assert [j.depends_on for j in jobs[1:]] == [
            (jobs[0].id,),
            (jobs[0].id,),
            (jobs[1].id, jobs[2].id),
        ]
        run_in_order(app.store, jobs)
    return chaos, jobs


def write_records(
    chaos: Chaos,
    started: list[tuple[int, float, int]],
    finished: list[tuple[int, float, float, int]],
) -> None:
    Path(f"{chaos.record}.started").write_text(
        "".join(f"{seq} {PID} {a:.6f} {job_id}\n" for seq, a, job_id in started)
    )
    chaos.record.write_text(
        "".join(f"{seq} {PID} {a:.6f} {b:.6f} {job_id}\n" for seq, a, b, job_id in finished)
    )


def test_an_ordered_history_passes_and_every_edge_is_checked(store_url, tmp_path):
    chaos, jobs = diamond_chaos(store_url, tmp_path)
    t = time.time() - 100
    spans = {0: (t, t + 1), 1: (t + 2, t + 3), 2: (t + 1.5, t + 4), 3: (t + 5, t + 6)}
    write_records(
        chaos,
        [(seq, a, jobs[seq].id) for seq, (a, _) in spans.items()],
        [(seq, a, b, jobs[seq].id) for seq, (a, b) in spans.items()],
    )
    with Conveyor(store_url) as app:
        chaos.verify(app.store)
    assert chaos.report.problems == []
    assert chaos.report.edges == 4 and chaos.report.order_violations == 0


def test_the_checks_catch_an_early_start_a_strangers_run_and_lost_edges(store_url, tmp_path):
    chaos, jobs = diamond_chaos(store_url, tmp_path)
    t = time.time() - 100
    # seq 2's first run began before seq 0 (its dependency) ended; its second run, after.
    started = [(0, t, jobs[0].id), (1, t + 2, jobs[1].id), (2, t + 0.5, jobs[2].id)]
    started += [(2, t + 2.5, jobs[2].id), (3, t + 5, jobs[3].id), (0, t, 999_999)]
    finished = [(0, t, t + 1, jobs[0].id), (1, t + 2, t + 3, jobs[1].id)]
    finished += [(2, t + 2.5, t + 4, jobs[2].id), (3, t + 5, t + 6, jobs[3].id)]
    write_records(chaos, started, finished)
    chaos.deps[3] = (0, 1, 2)  # the plan says more than the store kept
    with Conveyor(store_url) as app:
        chaos.verify(app.store)
    report = chaos.report
    problems = "\n".join(report.problems)
    assert report.order_violations == 1, problems
    assert report.edges == 2  # seq 1 and seq 2; seq 3's edges did not match the plan
    assert (
        f"dependency order: seq 2 (job {jobs[2].id}) started in pid {PID} at {t + 0.5:.6f}"
        in problems
    )
    assert f"before its dependency seq 0 (job {jobs[0].id}) ended at {t + 1:.6f}" in problems
    assert "seq 3 depends on seqs [1, 2], not [0, 1, 2]" in problems
    assert "runs recorded for a job id that is not theirs, e.g. [(0, {999999})]" in problems
    assert not report.ok


def test_the_producer_enqueues_each_workflow_whole_in_one_batch(sqlite_url, tmp_path):
    chaos = Chaos(
        ChaosConfig(store="sqlite", url=sqlite_url, workdir=tmp_path, jobs=500, workflow=True)
    )
    deps = chaos.deps
    assert len(deps) == 500 and chaos.report.workflows == len(chaos.workflow_starts) > 10
    assert any(len(d) >= 3 for d in deps) and any(len(d) == 1 for d in deps)  # joins, children
    batches = list(chaos.batches(0, 500, 50))
    assert [s for b in batches for s in b] == list(range(500))
    for batch in batches:
        assert batch.start in chaos.workflow_starts
        assert all(batch.start <= d < seq for seq in batch for d in deps[seq])
        refs = [chaos.job_spec(seq, batch.start).get("depends_on", []) for seq in batch]
        assert all(int(r[1:]) < i for i, rs in enumerate(refs) for r in rs)  # type: ignore[attr-defined]

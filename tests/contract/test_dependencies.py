"""Contract: dependencies between jobs (SPEC §8) on both stores, through the store and the
app: a job waits for its dependencies, every way of finishing a dependency settles its
dependents, and bad references store nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor import Conveyor
from conveyor import dependencies as deps_module
from conveyor.errors import InvalidJob, InvalidTransition
from conveyor.jobs import Finish, JobStatus, LeaseRef
from tests.support.factories import LEASE, claim_one, later


@pytest.fixture
def app(store_url):
    with Conveyor(store_url) as conveyor:
        yield conveyor


def claim_all(store, limit: int = 100):
    return store.claim(worker="w", queues=None, limit=limit, lease=LEASE)


def count(app: Conveyor) -> int:
    return sum(sum(by_status.values()) for by_status in app.stats().values())


def test_a_job_waits_for_its_dependencies_then_runs(app):
    a = app.enqueue("t")
    b = app.enqueue("t", delay=0)
    c = app.enqueue("merge", depends_on=[a.id, b.id])
    assert c.status == JobStatus.PENDING
    assert c.depends_on == (a.id, b.id) and c.on_dependency_failure == "cancel"
    assert c.run_at <= later(1)  # the run_at it asked for, not the held one
    claimed = claim_all(app.store)
    assert sorted(j.id for j in claimed) == [a.id, b.id]  # c is not due
    done_a = next(j for j in claimed if j.id == a.id)
    assert app.store.complete(done_a.lease_ref(), '"A"')
    assert claim_all(app.store) == []  # b is still running
    done_b = next(j for j in claimed if j.id == b.id)
    assert app.store.complete(done_b.lease_ref(), '"B"')
    (next_job,) = claim_all(app.store)
    assert next_job.id == c.id and next_job.depends_on == (a.id, b.id)
    assert [d.result for d in app.store.dependency_jobs(c.id)] == ["A", "B"]
    assert app.store.dependency_jobs(a.id) == []


def test_a_batch_of_outcomes_settles_the_dependents_of_a_job_named_while_it_ran(app):
    """One batch finishes a running job that gained a dependent while it ran, a job nothing
    waits for, and a run whose fence is stale: the first two are done and counted, the
    dependent becomes due, the stale outcome changes nothing."""
    a, b, stale = app.enqueue("t"), app.enqueue("t"), app.enqueue("t")
    held = {j.id: j for j in claim_all(app.store)}
    c = app.enqueue("merge", depends_on=[a.id])  # named while a runs
    wrong = Finish.done(LeaseRef(stale.id, "another-worker", 1), "null")
    applied = app.store.finish_many(
        [
            Finish.done(held[a.id].lease_ref(), '"A"'),
            Finish.done(held[b.id].lease_ref(), "null"),
            wrong,
        ]
    )
    assert applied == {a.id: JobStatus.DONE, b.id: JobStatus.DONE}
    assert app.store.get_job(stale.id).status == JobStatus.PROCESSING
    (next_job,) = claim_all(app.store)
    assert next_job.id == c.id
    assert app.stats()["default"]["done"] == 2


def test_a_dependency_finished_before_the_enqueue_counts_as_finished(app):
    a = app.enqueue("t")
    (job,) = claim_all(app.store)
    app.store.complete(job.lease_ref())
    c = app.enqueue("t", depends_on=[a.id])
    (claimed,) = claim_all(app.store)
    assert claimed.id == c.id


def test_a_failed_dependency_cancels_its_dependents_transitively(app):
    a = app.enqueue("t", max_attempts=1)
    b = app.enqueue("t", depends_on=[a.id])
    c = app.enqueue("t", depends_on=[b.id])
    runs = app.enqueue("t", depends_on=[b.id], on_dependency_failure="run")
    (job,) = claim_all(app.store)
    assert app.store.fail(job.lease_ref(), "boom", retry_at=None) == JobStatus.FAILED
    got = {j.id: j for j in (app.get_job(i) for i in (b.id, c.id, runs.id))}
    assert got[b.id].status == JobStatus.CANCELLED
    assert got[b.id].last_error == f"dependency {a.id} ended failed"
    assert got[b.id].finished_at is not None
    assert got[c.id].status == JobStatus.CANCELLED
    assert got[c.id].last_error == f"dependency {b.id} ended cancelled"
    assert got[runs.id].status == JobStatus.PENDING  # "run": its dependency has finished
    (claimed,) = claim_all(app.store)
    assert claimed.id == runs.id


def test_a_retry_with_attempts_left_does_not_settle_dependents(app):
    a = app.enqueue("t", max_attempts=2)
    b = app.enqueue("t", depends_on=[a.id])
    (job,) = claim_all(app.store)
    app.store.fail(job.lease_ref(), "once", retry_at=later(-1))
    assert app.get_job(b.id).status == JobStatus.PENDING
    (again,) = claim_all(app.store)  # the retry of a, not b
    assert again.id == a.id
    app.store.complete(again.lease_ref())
    (claimed,) = claim_all(app.store)
    assert claimed.id == b.id


def test_cancelling_a_dependency_cancels_its_dependents(app):
    a = app.enqueue("t", delay=3600)
    b = app.enqueue("t", depends_on=[a.id])
    runs = app.enqueue("t", depends_on=[a.id], on_dependency_failure="run")
    app.cancel(a.id)
    assert app.get_job(b.id).status == JobStatus.CANCELLED
    assert app.get_job(b.id).last_error == f"dependency {a.id} ended cancelled"
    assert app.get_job(runs.id).status == JobStatus.PENDING
    (claimed,) = claim_all(app.store)
    assert claimed.id == runs.id


def test_a_dependency_that_gives_up_on_recovery_cancels_its_dependents(app):
    a = app.enqueue("t", max_attempts=1)
    b = app.enqueue("t", depends_on=[a.id])
    claim_one(app.store)
    result = app.store.recover_expired(now=later(3600))
    assert result.failed == [a.id]
    assert app.get_job(a.id).status == JobStatus.FAILED
    assert app.get_job(b.id).status == JobStatus.CANCELLED


def test_a_dependency_already_failed_cancels_the_new_job_at_once(app):
    a = app.enqueue("t", max_attempts=1)
    (job,) = claim_all(app.store)
    app.store.fail(job.lease_ref(), "boom", retry_at=None)
    b = app.enqueue("t", depends_on=[a.id])
    assert b.status == JobStatus.CANCELLED and b.last_error == f"dependency {a.id} ended failed"
    runs = app.enqueue("t", depends_on=[a.id], on_dependency_failure="run")
    assert runs.status == JobStatus.PENDING
    (claimed,) = claim_all(app.store)
    assert claimed.id == runs.id


def test_batch_items_reference_earlier_items(app):
    jobs = app.enqueue_many(
        [
            {"type": "fetch", "payload": 1},
            {"type": "fetch", "payload": 2},
            {"type": "merge", "depends_on": ["@0", "@1"]},
            {"type": "report", "depends_on": ["@2"], "on_dependency_failure": "run"},
        ]
    )
    a, b, c, d = jobs
    assert c.depends_on == (a.id, b.id) and d.depends_on == (c.id,)
    assert d.on_dependency_failure == "run"
    assert sorted(j.id for j in claim_all(app.store)) == [a.id, b.id]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"type": "t", "depends_on": ["@0"]}], "no earlier item"),
        ([{"type": "t"}, {"type": "t", "depends_on": ["@1"]}], "earlier item"),
        ([{"type": "t"}, {"type": "t", "depends_on": ["@5"]}], "earlier item"),
        ([{"type": "t"}, {"type": "t", "depends_on": ["0"]}], "earlier item"),
        ([{"type": "t"}, {"type": "t", "depends_on": [999_999]}], "no job 999999"),
        ([{"type": "t"}, {"type": "t", "depends_on": 3}], "list of job ids"),
        ([{"type": "t"}, {"type": "t", "depends_on": [True]}], "list of job ids"),
        ([{"type": "t", "on_dependency_failure": "skip"}], "on_dependency_failure"),
    ],
)
def test_bad_references_are_refused_and_store_nothing(app, items, message):
    app.enqueue("t")
    before = count(app)
    with pytest.raises(InvalidJob, match=message):
        app.enqueue_many(items)
    assert count(app) == before


def test_an_unknown_dependency_or_batch_reference_in_a_single_enqueue_is_refused(app):
    with pytest.raises(InvalidJob, match="no job 424242"):
        app.enqueue("t", depends_on=[424242])
    with pytest.raises(InvalidJob, match="belong to a batch"):
        app.enqueue("t", depends_on=["@0"])  # type: ignore[list-item]
    assert count(app) == 0


def test_a_chain_deeper_than_the_limit_is_refused(app, monkeypatch):
    monkeypatch.setattr(deps_module, "MAX_DEPENDENCY_DEPTH", 3)
    a = app.enqueue("t")
    b = app.enqueue("t", depends_on=[a.id])
    c = app.enqueue("t", depends_on=[b.id])
    with pytest.raises(InvalidJob, match="at most 3 jobs deep"):
        app.enqueue("t", depends_on=[c.id])
    assert count(app) == 3


def test_a_unique_key_held_returns_the_holder_and_adds_no_edge(app):
    a = app.enqueue("t", delay=3600)
    first = app.enqueue("t", unique_key="k", depends_on=[a.id])
    again = app.enqueue("t", unique_key="k", depends_on=[a.id])
    assert again.id == first.id
    app.cancel(a.id)
    assert app.get_job(first.id).status == JobStatus.CANCELLED


def test_a_job_waiting_for_dependencies_keeps_the_run_at_it_asked_for(app):
    a = app.enqueue("t")
    when = later(120).replace(microsecond=0)
    b = app.enqueue("t", run_at=when, depends_on=[a.id])
    assert app.get_job(b.id).run_at == when
    (job,) = claim_all(app.store)
    app.store.complete(job.lease_ref())
    released = app.get_job(b.id)
    assert released.run_at == when  # not before the run_at it asked for
    assert claim_all(app.store) == []
    assert [j.id for j in app.store.claim(
        worker="w", queues=None, limit=5, lease=LEASE, now=when + timedelta(seconds=1)
    )] == [b.id]  # fmt: skip


def test_retrying_a_cancelled_dependent_waits_for_its_retried_dependency(app):
    a = app.enqueue("t", max_attempts=1)
    b = app.enqueue("t", depends_on=[a.id])
    (job,) = claim_all(app.store)
    app.store.fail(job.lease_ref(), "boom", retry_at=None)
    assert app.get_job(b.id).status == JobStatus.CANCELLED
    with pytest.raises(InvalidTransition, match=f"its dependency {a.id} is failed; retry that"):
        app.retry(b.id)  # it would only be cancelled again
    assert app.get_job(b.id).status == JobStatus.CANCELLED
    app.retry(a.id)  # retrying the dependency does not revive its dependents
    assert app.get_job(b.id).status == JobStatus.CANCELLED
    retried = app.retry(b.id)
    assert retried.status == JobStatus.PENDING
    (claimed,) = claim_all(app.store)
    assert claimed.id == a.id  # b waits for a again
    app.store.complete(claimed.lease_ref())
    (claimed,) = claim_all(app.store)
    assert claimed.id == b.id


def test_cancelling_a_waiting_job_then_retrying_it_after_its_dependency_finished(app):
    a = app.enqueue("t")
    when = later(-5).replace(microsecond=0)
    b = app.enqueue("t", run_at=when, depends_on=[a.id])
    cancelled = app.cancel(b.id)
    assert cancelled.run_at == when
    (job,) = claim_all(app.store)
    app.store.complete(job.lease_ref())
    retried = app.retry(b.id)
    assert retried.status == JobStatus.PENDING and retried.run_at > when
    (claimed,) = claim_all(app.store)
    assert claimed.id == b.id


def test_a_run_dependent_may_be_retried_whatever_its_dependencies(app):
    a = app.enqueue("t", max_attempts=1)
    b = app.enqueue("t", max_attempts=1, depends_on=[a.id], on_dependency_failure="run")
    (job,) = claim_all(app.store)
    app.store.fail(job.lease_ref(), "boom", retry_at=None)
    (job,) = claim_all(app.store)
    assert job.id == b.id
    app.store.fail(job.lease_ref(), "boom too", retry_at=None)
    assert app.retry(b.id).status == JobStatus.PENDING
    (claimed,) = claim_all(app.store)
    assert claimed.id == b.id


def test_dependents_list_every_job_that_named_a_dependency_whatever_its_state(app):
    a = app.enqueue("t")
    before = app.enqueue("t", depends_on=[a.id])  # a unfinished: an edge is kept too
    (job,) = claim_all(app.store)
    app.store.complete(job.lease_ref())
    after = app.enqueue("t", depends_on=[a.id], on_dependency_failure="run")  # a done
    batch = app.enqueue_many(
        [{"type": "t"}, {"type": "merge", "depends_on": ["@0", a.id]}]
    )  # fmt: skip
    assert [j.id for j in app.dependents(a.id)] == [before.id, after.id, batch[1].id]
    assert [j.id for j in app.dependents(a.id, limit=2)] == [before.id, after.id]
    assert [j.id for j in app.dependents(batch[0].id)] == [batch[1].id]
    assert app.dependents(before.id) == [] and app.dependents(999_999_999) == []
    listed = app.dependents(a.id)[0]
    assert listed.type == "t" and listed.depends_on == (a.id,)


def test_a_pruned_job_takes_its_dependents_list_and_a_pruned_dependent_leaves_it(app):
    a = app.enqueue("t")
    (job,) = claim_all(app.store)
    app.store.complete(job.lease_ref())
    z = app.enqueue("t", queue="held")  # never claimed here: its dependents wait
    waits = app.enqueue("t", depends_on=[a.id, z.id])
    gone = app.enqueue("t", depends_on=[z.id])
    app.cancel(gone.id)
    app.enqueue("t")  # the newest job, which prune keeps on SQLite
    assert [j.id for j in app.dependents(a.id)] == [waits.id]
    assert [j.id for j in app.dependents(z.id)] == [waits.id, gone.id]

    assert app.store.prune(older_than=timedelta(0), status=JobStatus.DONE) == 1
    assert app.get_job(a.id) is None
    assert app.dependents(a.id) == []  # its list went with it, though `waits` is there
    assert app.store.prune(older_than=timedelta(0), status=JobStatus.CANCELLED) == 1
    assert [j.id for j in app.dependents(z.id)] == [waits.id]

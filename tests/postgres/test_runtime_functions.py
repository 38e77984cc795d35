"""The hot statements as PL/pgSQL functions (migration 0016), which a store through a
transaction-mode pooler calls: each function's body is still its queries.sql statement, its
SET clauses are the runtime sessions' settings, and a pooled store's calls go through them
and behave as the statements do."""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
import pytest

from conveyor.jobs import Finish, JobStatus, LeaseRef
from conveyor.stores.postgres.store import GENERIC_PLANS, PostgresStore, Q
from tests.support.factories import add, claim_one
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

FUNCTIONS = ("claim", "finish_and_claim", "finish_many", "heartbeat", "enqueue")
# the functions whose SET clauses give them the runtime sessions' settings (enqueue is the
# client's, planned as usual)
RUNTIME = ("claim", "finish_and_claim", "finish_many", "heartbeat")
LEASE = timedelta(seconds=30)


def _words(sql: str) -> str:
    """`sql` without comments, its whitespace collapsed."""
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


def _expected_body(name: str) -> str:
    statement = re.sub(r"%\((\w+)\)s", r"_\1", Q[name])
    if name == "finish_and_claim":  # the claimed row as one column of the table's type
        statement = statement.replace("claimed.*", "claimed::jobs")
    return f"#variable_conflict use_column BEGIN RETURN QUERY {statement}; END"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_is_its_statement(admin, name):
    # A change to one of these statements in queries.sql needs a migration that replaces its
    # function, or pooled stores would go on running the old one.
    row = admin.execute(
        "SELECT prosrc, proconfig FROM pg_proc WHERE proname = %s", ("conveyor_" + name,)
    ).fetchone()
    assert row is not None, name
    source, config = row
    assert _words(source) == _words(_expected_body(name))
    settings = GENERIC_PLANS.replace("-c ", "").split()
    assert (config or []) == (settings if name in RUNTIME else [])


def _called(admin: psycopg.Connection) -> dict[str, int]:
    rows = admin.execute(
        "SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname LIKE 'conveyor\\_%'"
    ).fetchall()
    admin.execute("SELECT pg_stat_clear_snapshot()")
    called = {name.removeprefix("conveyor_"): calls for name, calls in rows}
    return {name: calls for name, calls in called.items() if name in FUNCTIONS}


def test_a_pooled_store_runs_the_hot_statements_as_function_calls(pg_url, admin):
    # counted in the sessions opened from here on (the pool's), not in the statements' own
    admin.execute(f"ALTER DATABASE {admin.info.dbname} SET track_functions = 'pl'")
    store = PostgresStore(f"{pg_url}?pooler=transaction")
    try:
        first = add(store, payload={"n": 1})
        second = add(store, payload={"n": 2}, priority=5)
        claimed = store.claim(worker="w", queues=None, limit=1, lease=LEASE)
        assert [job.id for job in claimed] == [second.id]  # the higher priority first
        job = claimed[0]
        assert (job.status, job.attempts, job.worker, job.payload) == (
            JobStatus.PROCESSING,
            1,
            "w",
            {"n": 2},
        )
        ref = LeaseRef(job.id, "w", 1)
        renewal = store.heartbeat([ref, LeaseRef(first.id, "w", 1)], lease=LEASE)
        assert (renewal.lost, renewal.stop) == ({first.id}, set())
        done = Finish.done(ref, '"ok"')
        applied, more = store.finish_and_claim(
            [done], worker="w", queues=None, limit=5, lease=LEASE
        )
        assert applied == {job.id: JobStatus.DONE}
        assert [j.id for j in more] == [first.id]
        assert store.get_job(job.id).result == "ok"
        applied, none = store.finish_and_claim(
            [Finish.done(LeaseRef(first.id, "w", 1), "1")],
            worker="w",
            queues=None,
            limit=5,
            lease=LEASE,
        )
        assert (applied, none) == ({first.id: JobStatus.DONE}, [])
        add(store, payload={"n": 3})
        third = claim_one(store, worker="w")
        failed = Finish.failed(LeaseRef(third.id, "w", 1), "boom")
        assert store.finish_many([failed]) == {third.id: JobStatus.FAILED}
    finally:
        store.close()  # the sessions' function statistics are written as they end
        admin.execute(f"ALTER DATABASE {admin.info.dbname} RESET track_functions")
    expected = {"enqueue": 3, "claim": 2, "heartbeat": 1, "finish_and_claim": 2, "finish_many": 1}
    wait_until(
        lambda: _called(admin) == expected,
        message=f"function statistics of the closed sessions: {expected}",
    )

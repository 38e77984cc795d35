"""The runtime's statements run with generic plans (PostgresStore's runtime pool sets
plan_cache_mode = force_generic_plan): one plan per connection, made without parameter
values and kept until the table's statistics change. Each must be an index walk whatever
the table looked like when it was planned: empty, just filled (no statistics yet), or
large and analysed. A sort of the pending jobs or a full scan there would run on every
claim."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from conveyor import jsontext
from conveyor.stores import open_store
from conveyor.stores.postgres.store import GENERIC_PLANS, PostgresStore, Q
from tests.support import pg

pytestmark = pytest.mark.postgres

RUNTIME_STATEMENTS = [
    "claim",
    "finish_and_claim",
    "finish_many",
    "heartbeat",
    "release",
    "recover_expired",
]


def generic_plan(conn: psycopg.Connection, name: str) -> str:
    """EXPLAIN of the generic plan of statement `name` (PostgreSQL 15 has no
    EXPLAIN (GENERIC_PLAN): prepare it, force generic plans, explain an execution)."""
    params: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in params:
            params.append(match.group(1))
        return f"${params.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, Q[name])
    conn.execute("DEALLOCATE ALL")  # the fixture's connection prepares nothing else
    conn.execute(f"PREPARE probe AS {text}")
    nulls = ", ".join("NULL" for _ in params)
    rows = conn.execute(f"EXPLAIN EXECUTE probe({nulls})").fetchall()
    return "\n".join(row[0] for row in rows)


def fill(conn: psycopg.Connection, pending: int, done: int) -> None:
    conn.execute(
        "INSERT INTO jobs (type, queue, payload, status, run_at, created_at, updated_at,"
        " finished_at)"
        " SELECT 't', 'q' || mod(i, 3), 'null',"
        " CASE WHEN i <= %(done)s THEN 'done' ELSE 'pending' END,"
        " now() - interval '1 minute', now(), now(), CASE WHEN i <= %(done)s THEN now() END"
        " FROM generate_series(1, %(total)s) AS i",
        {"done": done, "total": pending + done},
    )


@pytest.fixture(params=["empty", "filled, no statistics", "large, analysed"])
def table(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection]:
    """A connection set up as the runtime's, to a fresh database in the given state (a new
    database: a truncated table would keep its column statistics)."""
    pg.require_postgres()
    url = pg.create_database()
    store = open_store(url)
    store.migrate()
    store.close()
    try:
        with psycopg.connect(
            url, autocommit=True, options=GENERIC_PLANS, prepare_threshold=None
        ) as conn:
            conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
            if request.param == "filled, no statistics":
                fill(conn, pending=20_000, done=0)
            elif request.param == "large, analysed":
                fill(conn, pending=100_000, done=200_000)
                conn.execute("ANALYZE jobs")
            yield conn
    finally:
        pg.drop_database(url)


def test_runtime_connections_use_generic_plans(pg_url):
    store = PostgresStore(pg_url)
    try:
        modes = {
            pool: pool.run(lambda cur: cur.execute("SHOW plan_cache_mode").fetchone())
            for pool in (store._runtime, store._client)
        }
    finally:
        store.close()
    assert modes[store._runtime] == {"plan_cache_mode": "force_generic_plan"}
    assert modes[store._client] == {"plan_cache_mode": "auto"}


def test_runtime_statements_never_scan_the_table(table):
    for name in RUNTIME_STATEMENTS:
        plan = generic_plan(table, name)
        assert "Seq Scan on jobs" not in plan, (name, plan)


def test_claims_walk_the_pending_index_in_claim_order(table):
    # The rows come out of jobs_pending already in claim order: no sort of the backlog.
    for name in ("claim", "finish_and_claim"):
        plan = generic_plan(table, name)
        # (the anti join probes the queues table: a queue given settings is passed over)
        walk = r"Limit.*\n.*LockRows.*\n(.*Anti Join.*\n)?.*Index Scan using jobs_pending on jobs"
        assert re.search(walk, plan), (name, plan)
        assert "Sort" not in plan, (name, plan)


def test_fenced_statements_look_each_job_up_by_id(table):
    # The fixture's statistics saw no processing job: a plan that walks jobs_processing (every
    # processing job) per outcome or heartbeat would still look cheap, and be kept.
    for name in ("finish_and_claim", "finish_many", "heartbeat", "release"):
        plan = generic_plan(table, name)
        assert "jobs_processing" not in plan, (name, plan)
        assert "Index Scan using jobs_pkey on jobs" in plan, (name, plan)


def test_claims_within_queue_settings_read_jobs_by_index_only(table):
    # While a queue has settings (here: a limited, a keyed and a fair queue beside the
    # unlimited ones), claims go through next_due_restricted: queue by queue over
    # jobs_pending_by_queue, key by key over jobs_pending_by_key, limits counted on
    # jobs_processing and queue_starts; never a scan of the job table.
    table.execute(
        "INSERT INTO queues (name, concurrency, rate_limit, rate_period) VALUES"
        " ('q0', 20, 100, interval '1 second')"
    )
    table.execute("INSERT INTO queues (name, key_concurrency) VALUES ('q1', 2)")
    table.execute("INSERT INTO queues (name, fair) VALUES ('q2', true)")
    for name in ("claim_restricted", "finish_and_claim_restricted"):
        plan = generic_plan(table, name)
        assert "Seq Scan on jobs" not in plan, (name, plan)
        assert "jobs_pending_by_queue" in plan, (name, plan)
        assert "jobs_pending_by_key" in plan, (name, plan)
        assert "jobs_processing" in plan, (name, plan)


# Values for the runtime's statements as a worker sends them: ten claims' outcomes, leases.
_IDS = list(range(1, 11))
_FENCES = {"ids": _IDS, "workers": ["w"] * 10, "attempts": [1] * 10}
_OUTCOMES = {
    "outcomes": jsontext.dumps([[i, "w", 1, "null", None, None, "done"] for i in _IDS]),
    "ids": _IDS,
    "wake": [],
}
_CLAIM = {"worker": "w", "now": None, "lease": timedelta(seconds=30), "limit": 10}
POOLED_VALUES: dict[str, dict[str, object]] = {
    "claim": _CLAIM,
    "finish_and_claim": {**_CLAIM, **_OUTCOMES},
    "finish_many": {**_OUTCOMES, "now": None},
    "heartbeat": {**_FENCES, "lease": timedelta(seconds=30), "now": None},
    "release": {**_FENCES, "now": None, "not_before": None},
    "recover_expired": {"now": None, "limit": 1000},
}


# Through a pooler these are calls of their functions (migration 0016), the rest statements.
FUNCTIONS = ("claim", "finish_and_claim", "finish_many", "heartbeat")


def test_through_a_pooler_runtime_statements_keep_their_plans(table):
    # Through a transaction-mode pooler nothing is prepared: each call is planned with its
    # values, after the SET LOCAL the runtime's connections send with every statement. The
    # same plans as the generic ones above, whatever the table's state.
    url = f"{pg.base_url()}/{table.info.dbname}?pooler=transaction"
    store = PostgresStore(url)
    try:
        plans = {
            name: "\n".join(
                row["QUERY PLAN"]
                for row in store._runtime.run(
                    lambda cur, name=name, values=values: cur.execute(
                        "EXPLAIN " + Q[name], values
                    ).fetchall()
                )
            )
            for name, values in POOLED_VALUES.items()
        }
    finally:
        store.close()
    assert set(plans) == set(RUNTIME_STATEMENTS)
    for name, plan in plans.items():
        assert "Seq Scan on jobs" not in plan, (name, plan)
    walk = r"Limit.*\n.*LockRows.*\n(.*Anti Join.*\n)?.*Index Scan using jobs_pending on jobs"
    for name in ("claim", "finish_and_claim"):
        assert re.search(walk, plans[name]) and "Sort" not in plans[name], (name, plans[name])
    for name in ("finish_and_claim", "finish_many", "heartbeat", "release"):
        assert "jobs_processing" not in plans[name], (name, plans[name])
        assert "Index Scan using jobs_pkey on jobs" in plans[name], (name, plans[name])


def plan_inside(url: str, name: str, values: dict[str, object]) -> str:
    """The plan of the statement inside function `name` on its second call in a session
    (the plan that session kept), as auto_explain logs it; called as a pooled store calls it:
    on a connection with no session settings, preparing nothing."""
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_nested_statements = on")
        conn.execute("SET auto_explain.log_level = notice")
        for _ in range(2):
            conn.execute(Q["call_" + name], values).fetchall()
    # not the call itself, nor the statements of the count triggers (on new_jobs)
    inside = [text for text in notices if "FROM conveyor_" not in text and "new_jobs" not in text]
    assert len(inside) == 2, notices
    return inside[-1]


def test_through_a_pooler_runtime_functions_keep_the_generic_plans(table):
    # The functions' SET clauses give their statements the runtime sessions' settings for the
    # call: a generic plan from the first call, kept by the server session, with the same
    # guarantees as the prepared statements' above.
    url = f"{pg.base_url()}/{table.info.dbname}"
    plans = {name: plan_inside(url, name, POOLED_VALUES[name]) for name in FUNCTIONS}
    for name, plan in plans.items():
        assert "Seq Scan on jobs" not in plan, (name, plan)
        assert "JIT" not in plan, (name, plan)
    walk = r"Limit.*\n.*LockRows.*\n(.*Anti Join.*\n)?.*Index Scan using jobs_pending on jobs"
    for name in ("claim", "finish_and_claim"):
        assert re.search(walk, plans[name]) and "Sort" not in plans[name], (name, plans[name])
    for name in ("finish_and_claim", "finish_many", "heartbeat"):
        assert "jobs_processing" not in plans[name], (name, plans[name])
        assert "Index Scan using jobs_pkey on jobs" in plans[name], (name, plans[name])


@pytest.mark.parametrize("pooled", [False, True], ids=["direct", "pooled"])
def test_no_runtime_statement_is_jit_compiled(pg_url, pooled):
    # A sequential scan ruled out is priced at 10^10, not removed; PostgreSQL JIT-compiles
    # plans priced that high (most of a second per call), so the runtime's sessions turn JIT
    # off. EXPLAIN ANALYZE runs each statement and reports any compilation.
    url = f"{pg_url}?pooler=transaction" if pooled else pg_url
    store = PostgresStore(url)
    try:
        store.migrate()
        for name, values in POOLED_VALUES.items():
            plan = "\n".join(
                row["QUERY PLAN"]
                for row in store._runtime.run(
                    lambda cur, name=name, values=values: cur.execute(
                        "EXPLAIN (ANALYZE) " + Q[name], values
                    ).fetchall()
                )
            )
            assert "JIT" not in plan, (name, plan)
    finally:
        store.close()

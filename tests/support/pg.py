"""PostgreSQL for tests: one throwaway database per test session (per process)."""

from __future__ import annotations

import os
import uuid
from typing import NoReturn

import psycopg
import pytest

CI = os.environ.get("CI", "").lower() == "true"
ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def base_url() -> str:
    return ADMIN_URL.rsplit("/", 1)[0]


def unavailable(reason: str, *, tests: str) -> NoReturn:
    """A test's real part (a server, a program) is missing: fail under CI=true, where
    `tests` must run, and skip with the reason elsewhere."""
    if CI:
        pytest.fail(f"{reason} (CI=true: {tests} must run)", pytrace=False)
    pytest.skip(reason)


def require_postgres() -> None:
    """Fail under CI=true, skip loudly elsewhere, when PostgreSQL cannot be reached."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {exc}".splitlines()[0]
        unavailable(reason, tests="PostgreSQL tests")


def create_database(prefix: str = "conveyor_test") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url()}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_dependencies, job_dependents RESTART IDENTITY")  # §8
        conn.execute("TRUNCATE periodic")  # periodic jobs' schedules (SPEC §7)
        conn.execute("TRUNCATE queues, queue_starts")  # queue settings and rate windows (§7)
        conn.execute("TRUNCATE leaders")  # who leads retention (§7): killed workers' rows
        conn.execute("TRUNCATE finish_listeners")  # sessions waiting for results (§8)
        conn.execute("TRUNCATE workers, job_minutes")  # the registry, aggregates (§9)

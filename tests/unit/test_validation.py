"""One builder per input kind in conveyor/validation.py: `job_filter` for listings and
`parse_run_at` for run_at, used by every entry point; JobFilter itself is plain data."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime, timedelta, timezone

import pytest

import conveyor.jobs
from conveyor.errors import InvalidJob
from conveyor.jobs import LIST_LIMIT_DEFAULT, JobFilter, JobStatus
from conveyor.validation import job_filter, parse_run_at


def test_job_filter_builds_a_plain_job_filter():
    assert job_filter() == JobFilter(limit=LIST_LIMIT_DEFAULT)
    built = job_filter(status="failed", type="t", queue="q", before_id=7, limit=5)
    assert built == JobFilter(JobStatus.FAILED, "t", "q", 7, 5)
    assert built.status is JobStatus.FAILED


def test_job_filter_is_plain_data_that_checks_nothing():
    # the checks live in validation.job_filter; a store-level caller may build any filter
    assert JobFilter(limit=0, type="").limit == 0


def test_jobs_does_not_import_validation():
    """No import loop: validation imports jobs (and payloads), never the other way."""
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(ast.parse(inspect.getsource(conveyor.jobs)))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [node])
    }
    assert not {"conveyor.validation", "conveyor.payloads"} & imported, imported


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02t03:04:05z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),  # RFC 3339 allows
        ("2030-01-02T05:04:05.000123+02:00", datetime(2030, 1, 2, 3, 4, 5, 123, tzinfo=UTC)),
        (
            datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
    ],
)
def test_parse_run_at_gives_aware_utc(value, expected):
    parsed = parse_run_at(value)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2030-01-02T03:04:05", "run_at must carry a timezone"),
        (datetime(2030, 1, 2), "run_at must carry a timezone"),
        ("next tuesday", "run_at is not an ISO 8601 timestamp: 'next tuesday'"),
        ("0001-01-01T00:00:00+05:00", "run_at is out of range"),
        (1_900_000_000, "run_at must be an ISO 8601 timestamp"),
    ],
)
def test_parse_run_at_refuses_with_one_line(value, message):
    with pytest.raises(InvalidJob) as refused:
        parse_run_at(value)
    assert str(refused.value).startswith(message)

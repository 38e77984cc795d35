"""Bulk actions (SPEC §8), the pure parts: the filter's checks, and how ids are cut into
batches (each one transaction, and on PostgreSQL one NOTIFY payload under 8000 bytes)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.errors import InvalidJob
from conveyor.jobs import ID_MAX, BulkFilter, JobStatus
from conveyor.stores.base import BULK_BATCH, NOTIFY_PAYLOAD_MAX, id_batches
from conveyor.validation import bulk_filter


def test_ids_come_sorted_without_repeats_in_batches_of_at_most_500():
    batches = list(id_batches([5, 3, 5, *range(1000, 2200)]))
    assert [len(b) for b in batches] == [BULK_BATCH, BULK_BATCH, 202]
    assert batches[0][:3] == [3, 5, 1000]
    assert [i for b in batches for i in b] == [3, 5, *range(1000, 2200)]
    assert list(id_batches([])) == []


def test_batches_of_long_ids_stay_under_the_notify_payload_limit():
    big = list(range(ID_MAX - 2000, ID_MAX + 1))  # 19 digits each: 500 would be 10,000 bytes
    batches = list(id_batches(big))
    assert all(len(",".join(map(str, b))) <= NOTIFY_PAYLOAD_MAX for b in batches)
    assert max(len(b) for b in batches) == (NOTIFY_PAYLOAD_MAX + 1) // 20  # 400 of 19 digits
    assert [i for b in batches for i in b] == big


def test_ids_no_store_can_hold_are_left_out():
    assert list(id_batches([0, -4, ID_MAX + 1, 7])) == [[7]]


def test_a_bulk_filter_takes_text_or_values():
    query = bulk_filter(
        "retry", status="failed", queue="q", type="t", created_before="2030-01-01t12:00:00z"
    )
    assert query == BulkFilter(
        JobStatus.FAILED, queue="q", type="t", created_before=datetime(2030, 1, 1, 12, tzinfo=UTC)
    )
    assert bulk_filter("cancel", status=JobStatus.PROCESSING) == BulkFilter(JobStatus.PROCESSING)


@pytest.mark.parametrize(
    ("action", "kw", "message"),
    [
        ("retry", {"status": None}, "status is required: retry applies to failed or cancelled"),
        ("cancel", {"status": None}, "status is required: cancel applies to pending or processing"),
        ("cancel", {"status": "nope"}, "status must be one of pending, processing, done, fail"),
        ("cancel", {"status": "done"}, "cancel applies to pending or processing jobs, not done"),
        ("retry", {"status": "pending"}, "retry applies to failed or cancelled jobs, not pending"),
        ("retry", {"status": "failed", "queue": ""}, "queue must be 1 to 200 characters"),
        ("retry", {"status": "failed", "type": "x" * 201}, "type must be 1 to 200 characters"),
        ("retry", {"status": "failed", "created_before": "x"}, "created_before is not an ISO"),
        (
            "retry",
            {"status": "failed", "created_before": datetime(2030, 1, 1)},  # noqa: DTZ001
            "created_before must carry a timezone",
        ),
    ],
)
def test_a_bad_bulk_filter_says_what_applies(action, kw, message):
    with pytest.raises(InvalidJob, match=message):
        bulk_filter(action, **kw)

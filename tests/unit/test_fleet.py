"""The duration buckets and percentiles of the per-minute aggregates (conveyor/fleet.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import fleet
from conveyor.fleet import BOUNDS, BUCKETS, MinuteStats


def test_buckets_are_the_bounds_at_or_below():
    assert fleet.bucket(0) == 0
    assert fleet.bucket(0.0009) == 0
    assert fleet.bucket(0.001) == 1  # a bound opens its bucket
    assert fleet.bucket(0.3) == BOUNDS.index(0.2) + 1
    assert fleet.bucket(3600) == fleet.bucket(10**6) == BUCKETS - 1


def test_percentiles_interpolate_within_a_bucket():
    assert fleet.percentile([0] * BUCKETS, 0.5) is None
    histogram = [0] * BUCKETS
    histogram[fleet.bucket(0.3)] = 90  # [0.2, 0.5)
    histogram[fleet.bucket(7.0)] = 10  # [5, 10)
    p50, p95 = fleet.percentile(histogram, 0.5), fleet.percentile(histogram, 0.95)
    assert p50 is not None and 0.2 <= p50 < 0.5
    assert p95 is not None and 5 <= p95 < 10
    assert fleet.percentile(histogram, 0.9) == 0.5  # the top of the first bucket


def test_overview_zero_fills_the_hour_oldest_first():
    now = datetime(2026, 1, 1, 12, 30, 15, tzinfo=UTC)
    rows = [
        MinuteStats(datetime(2026, 1, 1, 12, 30, tzinfo=UTC), 3, 5, 4, 1, 0),
        MinuteStats(datetime(2026, 1, 1, 12, 30, tzinfo=UTC), 4, 5, 2, 0, 1),
        MinuteStats(datetime(2026, 1, 1, 11, 31, tzinfo=UTC), 9, 9, 7, 0, 0),  # first minute
        MinuteStats(datetime(2026, 1, 1, 11, 30, tzinfo=UTC), 9, 9, 100, 0, 0),  # too old
    ]
    view = fleet.overview({"q": {"done": 1}}, rows, [], now)
    minutes = view["per_minute"]
    assert len(minutes) == 60
    assert minutes[0] == {
        "minute": "2026-01-01T11:31:00+00:00",
        "finished": 7,
        "failed": 0,
        "retried": 0,
    }
    assert minutes[-1] == {
        "minute": "2026-01-01T12:30:00+00:00",
        "finished": 6,
        "failed": 1,
        "retried": 1,
    }
    assert sum(m["finished"] for m in minutes[1:-1]) == 0
    # percentiles: only the last 5 minutes' 8 attempts, not the older ones in bucket 9
    assert view["queue_wait"]["p95"] < BOUNDS[4]
    assert view["workers"] == {"live": 0, "slots": 0, "busy": 0}
    assert view["generated_at"] == now.isoformat()
    assert now - timedelta(hours=1) < datetime.fromisoformat(minutes[0]["minute"])

"""Queue settings and concurrency_key: the one parser of every entry point (SPEC §7)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from conveyor.errors import InvalidJob
from conveyor.jobs import QUEUE_LIMIT_MAX, QueueSettings, RateLimit
from conveyor.validation import (
    RATE_LIMIT_PATTERN,
    new_job,
    queue_changes,
    queue_limit,
    queue_name,
    rate_limit,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/s", RateLimit(10, 1)),
        ("600/m", RateLimit(600, 60)),
        ("5000/h", RateLimit(5000, 3600)),
        ("1/s", RateLimit(1, 1)),
        ("999999999/h", RateLimit(999_999_999, 3600)),
        ("none", None),
        (None, None),
        (RateLimit(3, 60), RateLimit(3, 60)),
    ],
)
def test_rate_limit_parses(text, expected):
    assert rate_limit(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0/s",
        "10",
        "10/d",
        "10/sec",
        "10 / s",
        "10/S",
        " 10/s",
        "10/s\n",
        "-1/s",
        "1.5/s",
        "05/s",
        "1000000000/s",
        "None",
        "",
        "/s",
        "١٠/s",  # Arabic-Indic digits: int() would take them
    ],
)
def test_rate_limit_refuses(text):
    with pytest.raises(InvalidJob, match="rate_limit must be N/s, N/m or N/h"):
        rate_limit(text)


def test_rate_limit_text_and_the_documented_pattern_agree():
    # the HTTP schema documents RATE_LIMIT_PATTERN: it must take exactly what the parser takes
    samples = ["10/s", "600/m", "5000/h", "none", "0/s", "10/S", "10/s\n", " 10/s", "1000000000/s"]
    for sample in samples:
        documented = re.search(RATE_LIMIT_PATTERN.replace("$", r"\Z"), sample) is not None
        try:
            rate_limit(sample)
            parsed = True
        except InvalidJob:
            parsed = False
        assert documented == parsed, sample


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (RateLimit(0, 1), "rate_limit's count must be between 1 and 999999999"),
        (RateLimit(10, 7), "rate_limit's period must be 1, 60 or 3600 seconds"),
        (RateLimit(True, 1), "rate_limit's count must be an integer"),
        (10, "rate_limit must be text"),
        ((10, 1), "rate_limit must be text"),
    ],
)
def test_rate_limit_objects_are_checked(value, message):
    with pytest.raises(InvalidJob, match=re.escape(message)):
        rate_limit(value)


def test_rate_limit_text():
    assert str(RateLimit(10, 1)) == "10/s"
    assert str(RateLimit(600, 60)) == "600/m"
    assert str(RateLimit(5000, 3600)) == "5000/h"
    assert str(RateLimit(7, 90)) == "7/90s"  # not ours: written by hand into the store
    assert RateLimit(600, 60).window.total_seconds() == 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (5, 5), (QUEUE_LIMIT_MAX, QUEUE_LIMIT_MAX), (None, None), ("none", None), ("7", 7)],
)
def test_limits_parse(value, expected):
    assert queue_limit(value, "concurrency") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "concurrency must be between 1 and 999999999, got 0"),
        (-1, "concurrency must be between 1 and 999999999, got -1"),
        (QUEUE_LIMIT_MAX + 1, "concurrency must be between 1 and 999999999, got 1000000000"),
        ("0", "concurrency must be between 1 and 999999999, got 0"),
        ("abc", "concurrency must be an integer of at least 1, or none"),
        ("1.5", "concurrency must be an integer of at least 1, or none"),
        ("9" * 5000, "concurrency must be an integer of at least 1, or none"),
        (True, "concurrency must be an integer"),
        (1.0, "concurrency must be an integer"),
    ],
)
def test_limits_refuse(value, message):
    with pytest.raises(InvalidJob, match=re.escape(message)):
        queue_limit(value, "concurrency")


def test_queue_changes_keep_only_what_is_given():
    assert queue_changes({}) == {}
    assert queue_changes({"fair": True}) == {"fair": True}
    assert queue_changes(
        {"concurrency": 2, "rate_limit": "10/s", "key_concurrency": None, "fair": False}
    ) == {
        "concurrency": 2,
        "rate_limit": RateLimit(10, 1),
        "key_concurrency": None,
        "fair": False,
    }
    assert queue_changes({"concurrency": "none", "rate_limit": "none"}) == {
        "concurrency": None,
        "rate_limit": None,
    }


def test_queue_changes_refuse_bad_values_and_unknown_settings():
    with pytest.raises(InvalidJob, match="fair must be true or false"):
        queue_changes({"fair": None})
    with pytest.raises(InvalidJob, match="fair must be true or false"):
        queue_changes({"fair": "yes"})
    with pytest.raises(InvalidJob, match="key_concurrency must be between"):
        queue_changes({"key_concurrency": 0})
    with pytest.raises(TypeError, match="unknown queue setting 'concurency'"):
        queue_changes({"concurency": 2})


def test_queue_names_follow_the_rules_of_a_jobs_queue():
    assert queue_name("reports/eu") == "reports/eu"
    for bad, message in [
        ("", "queue must be 1 to 200 characters, got 0"),
        ("q" * 201, "queue must be 1 to 200 characters, got 201"),
        ("a\x00b", "queue must not contain NUL characters"),
        ("\ud800", "queue is not valid unicode"),
        (5, "queue must be a string"),
    ]:
        with pytest.raises(InvalidJob, match=re.escape(message)):
            queue_name(bad)


def test_concurrency_key_rules():
    assert new_job("t", concurrency_key="tenant-42").concurrency_key == "tenant-42"
    assert new_job("t").concurrency_key is None
    assert new_job("t", concurrency_key="k" * 255).concurrency_key == "k" * 255
    for bad, message in [
        ("", "concurrency_key must be 1 to 255 characters, got 0"),
        ("k" * 256, "concurrency_key must be 1 to 255 characters, got 256"),
        ("a\x00b", "concurrency_key must not contain NUL characters"),
        ("\udc80", "concurrency_key is not valid unicode"),
        (42, "concurrency_key must be a string"),
    ]:
        with pytest.raises(InvalidJob, match=re.escape(message)):
            new_job("t", concurrency_key=bad)


def test_queue_settings_json():
    until = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    queue = QueueSettings(
        "payments",
        concurrency=2,
        rate_limit=RateLimit(10, 1),
        key_concurrency=1,
        fair=True,
        paused=True,
        paused_until=until,
    )
    assert queue.to_json() == {
        "name": "payments",
        "concurrency": 2,
        "rate_limit": "10/s",
        "key_concurrency": 1,
        "fair": True,
        "paused": True,
        "paused_until": "2030-01-02T03:04:05.678901+00:00",
    }
    counted = QueueSettings("q", counts={"pending": 3})
    assert counted.to_json()["counts"] == {"pending": 3}

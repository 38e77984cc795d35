"""Pure logic: backoff, payload → arguments, validation, SQL file parsing, durations."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from conveyor import jsontext
from conveyor.backoff import exponential_backoff
from conveyor.cli.jobs import MAX_DURATION_DAYS, parse_duration
from conveyor.errors import ConveyorError, InvalidJob
from conveyor.payloads import ResultError, encode_payload, encode_result
from conveyor.stores import sqlfile
from conveyor.tasks import call_arguments
from conveyor.validation import new_job


def test_backoff_doubles_with_bounded_jitter_and_cap():
    rng = random.Random(1)
    for attempt, base in [(1, 2), (2, 4), (3, 8), (10, 1024)]:
        for _ in range(50):
            assert base * 0.8 <= exponential_backoff(attempt, rng=rng) <= base * 1.2
    assert exponential_backoff(40, rng=rng) <= 3600


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (None, ((), {})),
        ({"a": 1}, ((), {"a": 1})),
        ("x", (("x",), {})),
        ([1, 2], (([1, 2],), {})),
        (0, ((0,), {})),
        (False, ((False,), {})),
    ],
)
def test_payload_to_arguments(payload, expected):
    assert call_arguments(payload) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": ""}, "type must be 1 to 200"),
        ({"type": "x" * 201}, "type must be 1 to 200"),
        ({"type": "a\x00b"}, "NUL"),
        ({"type": "\udcff"}, "not valid unicode"),
        ({"type": "t", "queue": "q" * 201}, "queue"),
        ({"type": "t", "priority": 32768}, "priority must be between"),
        ({"type": "t", "priority": True}, "priority must be an integer"),
        ({"type": "t", "max_attempts": 0}, "max_attempts"),
        ({"type": "t", "max_attempts": 1001}, "max_attempts"),
        ({"type": "t", "delay": -1}, "delay"),
        ({"type": "t", "delay": 31_536_001}, "delay"),
        ({"type": "t", "delay": 1, "run_at": datetime.now(UTC)}, "either delay or run_at"),
        ({"type": "t", "run_at": datetime(2030, 1, 1)}, "timezone"),
        ({"type": "t", "run_at": "not a date"}, "ISO 8601"),
        ({"type": "t", "unique_key": "k" * 256}, "unique_key"),
        ({"type": "t", "payload": {"x": float("nan")}}, "not JSON"),
        ({"type": "t", "payload": object()}, "not JSON"),
        ({"type": "t", "payload": "a\x00"}, "NUL"),
    ],
)
def test_invalid_jobs_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(InvalidJob, match=message):
        new_job(**kwargs)


def test_valid_job_encodes_payload_and_defaults():
    job = new_job("t", {"b": [1, "é"]}, default_max_attempts=7)
    assert job.payload_json == '{"b":[1,"é"]}'
    assert (job.queue, job.priority, job.max_attempts, job.run_at) == ("default", 0, 7, None)
    assert new_job("t", run_at="2030-01-01T00:00:00+00:00").run_at == datetime(
        2030, 1, 1, tzinfo=UTC
    )


def test_results_that_cannot_be_stored():
    assert encode_result({"a": 1}) == '{"a":1}'
    with pytest.raises(ResultError, match="not JSON"):
        encode_result({1, 2})
    with pytest.raises(ResultError, match="more than the limit"):
        encode_result("x" * (2 * 1024 * 1024))
    with pytest.raises(InvalidJob, match="more than the limit"):
        encode_payload("x" * (2 * 1024 * 1024))


NUL_MESSAGE = "contains a NUL character (\\u0000), which cannot be stored"
# Text that merely looks like the escape: a backslash then u0000 (JSON "\\u0000"), with more
# backslashes before it, beside or inside other text, as keys.
LOOKS_LIKE_NUL = [
    "\\u0000",
    "\\\\u0000",
    "\\\\\\\\u0000",
    "a\\u0000b\\u0000",
    "\\u00000",
    "\\u0000\\",
    "\\U0000",
    "u0000",
    "\\x00",
    "\\0",
]
# A real NUL (U+0000) somewhere in the strings: after backslashes too, whose escapes then
# come just before the NUL's own \u0000 in the JSON text.
REAL_NUL = ["\x00", "a\x00b", "\\\x00", "\\\\\x00", "\\u0000\x00", "\x00\\u0000", "x" * 50 + "\x00"]


@pytest.mark.parametrize("text", LOOKS_LIKE_NUL, ids=ascii)
def test_the_text_of_a_nul_escape_is_not_a_nul(text):
    for value in (text, {text: text}, [1, {"deep": [text]}]):
        assert jsontext.loads(encode_payload(value)) == value
        assert jsontext.loads(encode_result(value)) == value
    assert new_job("t", text).payload_json == jsontext.dumps(text)


@pytest.mark.parametrize("text", REAL_NUL, ids=ascii)
def test_a_real_nul_anywhere_in_a_payload_or_result_is_refused(text):
    for value in (text, {text: 1}, {"k": [1, {"deep": text}]}, ["\\u0000", text]):
        with pytest.raises(InvalidJob) as refused:
            encode_payload(value)
        assert str(refused.value) == f"payload {NUL_MESSAGE}"
        with pytest.raises(ResultError) as failed:
            encode_result(value)
        assert str(failed.value) == f"result {NUL_MESSAGE}"


def test_sqlfile_parses_named_blocks():
    queries = sqlfile.parse(
        "-- header\n-- name: a\n-- doc\nSELECT 1,\n\n  -- why\n  2 -- two\nFROM t;\n"
        "-- name: b\nSELECT 2\n"
    )
    # comment-only lines, blank lines and indentation stay in the file; a comment after code
    # stays with it
    assert dict(queries) == {"a": "SELECT 1,\n2 -- two\nFROM t", "b": "SELECT 2"}
    with pytest.raises(ValueError, match="twice"):
        sqlfile.parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


def test_sqlfile_blocks_include_shared_fragments():
    queries = sqlfile.parse(
        "-- name: ids\nSELECT id FROM t\n-- name: q\nWITH x AS ({{ids}}) TABLE x\n"
    )
    assert queries["q"] == "WITH x AS (SELECT id FROM t) TABLE x"
    with pytest.raises(ValueError, match="unknown or too deeply nested fragment"):
        sqlfile.parse("-- name: q\nSELECT {{missing}}\n")
    nested = sqlfile.parse("-- name: a\n1\n-- name: b\n({{a}})\n-- name: q\nSELECT {{b}}\n")
    assert nested["q"] == "SELECT (1)"
    with pytest.raises(ValueError, match="too deeply nested"):  # a cycle never ends
        sqlfile.parse("-- name: a\n{{b}}\n-- name: b\n{{a}}\n")


def test_postgres_statements_fit_the_drivers_statement_cache():
    # psycopg parses a statement's placeholders once and caches the result, but only for
    # statements up to this size; a longer one is parsed again on every call (a claim!).
    import psycopg._queries

    limit = getattr(psycopg._queries, "MAX_CACHED_STATEMENT_LENGTH", 4096)
    # The claims within queue settings (used only while some queue has settings) are longer:
    # their parse is measured in docs/performance.md ("Flow control").
    within_settings = {"next_due_restricted", "claim_restricted", "finish_and_claim_restricted"}
    for name, query in sqlfile.load("conveyor.stores.postgres").items():
        assert name in within_settings or len(query.encode()) <= limit, name


def test_every_store_defines_the_same_worker_queries():
    sqlite = sqlfile.load("conveyor.stores.sqlite")
    for name in (
        "enqueue",
        "claim",
        "heartbeat",
        "complete",
        "fail",
        "release",
        "recover_expired",
        "cancel_many",  # cancel and retry run these with one id
        "retry_many",
        "prune",
        "stats",
        "list_jobs",
    ):
        assert name in sqlite


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 604800),
        ("12h", 43200),
        ("30m", 1800),
        ("45s", 45),
        ("90", 90),
        ("1.5h", 5400),
        ("2w", 1209600),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_refuses_garbage():
    with pytest.raises(ConveyorError, match="bad duration"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("0d", 0), ("0.0s", 0), ("36500d", 36500 * 86400), ("876000h", 36500 * 86400)],
)
def test_parse_duration_takes_zero_up_to_100_years(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    "text",
    ["36500.01d", "36501d", "5215w", "9999999d", "99999999999d", "1" * 400, "1" * 400 + "d"],
)
def test_parse_duration_refuses_more_than_100_years_in_one_line(text):
    with pytest.raises(ConveyorError) as refused:
        parse_duration(text)
    assert str(refused.value) == (
        f"duration {text!r} is out of range: at most {MAX_DURATION_DAYS}d (100 years)"
    )


def test_run_at_out_of_range_is_refused():
    with pytest.raises(InvalidJob, match="out of range"):
        new_job("t", run_at="0001-01-01T00:00:00+05:00")

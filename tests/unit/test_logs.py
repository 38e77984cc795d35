"""Log lines: one record is one line, whatever the logged values hold."""

from __future__ import annotations

import json
import logging
import re

import pytest

from conveyor.logs import JsonFormatter, TextFormatter, escape, job_fields

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
FORGED = "x\n2026-01-01T00:00:00.000Z INFO [WORKER-1] finished job=1 status=done"
BREAKERS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def record(msg: str, *args: object, exc: BaseException | None = None, **fields: object):
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.getLogger("conveyor.test").makeRecord(
        "conveyor.test",
        logging.INFO,
        __file__,
        1,
        msg,
        args,
        exc_info,
        extra=job_fields(**fields) if fields else None,
    )


def text(rec: logging.LogRecord) -> str:
    line = TextFormatter().format(rec)
    assert TS.match(line), line
    return line


def test_ordinary_job_lines_are_unchanged():
    line = text(
        record("processing", worker="WORKER-1", job=123, type="payment", priority=3, attempt=1)
    )
    assert line.endswith(" INFO [WORKER-1] processing job=123 type=payment priority=3 attempt=1")
    line = text(record("finished", worker="WORKER-1", job=123, status="done", duration=7.2))
    assert line.endswith(" INFO [WORKER-1] finished job=123 status=done duration=7.200s")
    assert text(record("print: %s", "hello world")).endswith(" INFO print: hello world")


def test_a_type_with_a_newline_cannot_forge_a_line():
    line = text(record("processing", worker="WORKER-1", job=7, type=FORGED, attempt=1))
    assert line.splitlines() == [line]
    shown = '"x\\n2026-01-01T00:00:00.000Z INFO [WORKER-1] finished job=1 status=done"'
    assert f" type={shown} attempt=1" in line
    assert json.loads(line.split(" type=")[1].rsplit(" attempt=")[0]) == FORGED


@pytest.mark.parametrize("breaker", BREAKERS, ids=ascii)
def test_no_line_breaker_survives_in_a_message_a_field_or_the_worker(breaker):
    value = f"a{breaker}2026-01-01T00:00:00.000Z INFO b"
    lines = [
        text(record("print: %s", value)),
        text(record(value)),
        text(record("processing", worker=value, job=1, type=value, attempt=1)),
        text(record("finished", worker="W", job=1, status="failed", error=f"E: {value}")),
        text(record("processing", worker="W", job=1, type=f"nospace{breaker}x")),
    ]
    for line in lines:
        assert line.splitlines() == [line], ascii(line)
        assert breaker not in line


def test_control_characters_are_shown_escaped():
    assert escape("a\nb\rc\td\x1b[31m\x00\x7f\x85\u2028") == (
        "a\\nb\\rc\\td\\x1b[31m\\x00\\x7f\\x85\\u2028"
    )
    assert escape("plain é 🚀 \u200b") == "plain é 🚀 \u200b"  # printable text is kept
    line = text(record("print: %s", "one\ntwo\rthree"))
    assert line.endswith(" INFO print: one\\ntwo\\rthree")
    # A quoted value is a JSON string that decodes back to the value.
    line = text(record("processing", worker="W", job=1, type="t\x1b\x85\u2028"))
    assert json.loads(line.split(" type=")[1]) == "t\x1b\x85\u2028"


def test_an_error_keeps_its_first_line_escaped():
    line = text(
        record("finished", worker="W", job=1, status="failed", error="ValueError: a\tb\nTraceback")
    )
    assert line.endswith(' status=failed error="ValueError: a\\tb"')


def test_a_traceback_follows_on_indented_lines_only():
    try:
        raise ValueError(FORGED + "\rmore")
    except ValueError as exc:
        line = TextFormatter().format(record("request failed", exc=exc))
    first, *rest = line.split("\n")
    assert TS.match(first) and first.endswith(" INFO request failed")
    assert rest and all(part.startswith("    ") for part in rest), line
    assert "\r" not in line
    assert any("Traceback (most recent call last):" in part for part in rest)


def test_json_lines_are_one_line_and_keep_the_values():
    rec = record("print: %s", FORGED, worker="W\n1", job=1, type=FORGED)
    line = JsonFormatter().format(rec)
    assert line.splitlines() == [line]
    out = json.loads(line)
    assert (out["msg"], out["type"], out["worker"]) == (f"print: {FORGED}", FORGED, "W\n1")

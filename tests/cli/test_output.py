"""`jobs list` and `stats` tables: plain, stable text when stdout is not a terminal (no
colour codes even under FORCE_COLOR), rich's table on a terminal; job data can neither break
a row nor reach the terminal as escape codes. `--json` is json.dumps(indent=2) as before."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime

import pytest

from conveyor.cli.output import print_jobs, print_json, print_stats
from conveyor.jobs import Job, JobStatus
from tests.cli.test_cli import run

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def job(id: int, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": id,
        "type": "reverse",
        "queue": "default",
        "payload": None,
        "priority": 0,
        "status": JobStatus.PENDING,
        "attempts": 0,
        "max_attempts": 5,
        "run_at": AT,
        "unique_key": None,
        "result": None,
        "last_error": None,
        "worker": None,
        "created_at": AT,
        "updated_at": AT,
        "started_at": None,
        "finished_at": None,
    }
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


HOSTILE = "[bold]x:rocket:\x1b]0;title\x07\nnext"


def test_plain_tables_when_not_a_terminal(capsys):
    print_jobs(
        [
            job(12, status=JobStatus.FAILED, attempts=5, last_error="ValueError: boom\nTrace"),
            job(3, type=HOSTILE, priority=-3),
        ]
    )
    print_stats({"q": {"failed": 1}, "default": {"pending": 3, "done": 10}})
    print_stats({})
    assert capsys.readouterr().out == (
        "id  type                                   queue    status   priority  attempts"
        "  run_at                     last_error\n"
        "--  -------------------------------------  -------  -------  --------  --------"
        "  -------------------------  ----------------\n"
        "12  reverse                                default  failed   0         5/5     "
        "  2030-01-02T03:04:05+00:00  ValueError: boom\n"
        "3   [bold]x:rocket:\\x1b]0;title\\x07\\nnext  default  pending  -3        0/5     "
        "  2030-01-02T03:04:05+00:00\n"
        "queue    pending  processing  done  failed  cancelled  total\n"
        "-------  -------  ----------  ----  ------  ---------  -----\n"
        "default  3        0           10    0       0          13\n"
        "q        0        0           0     1       0          1\n"
        "no jobs\n"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_table_on_a_terminal_with_data_shown_as_text(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NO_COLOR", raising=False)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    print_jobs([job(3, type=HOSTILE, status=JobStatus.FAILED)])
    out = screen.getvalue()
    assert "\x1b[" in out, "styled: a bold header, the status in colour"
    assert "failed" in out and "2030-01-02T03:04:05+00:00" in out
    # markup and emoji codes in job data are text; its control characters are escaped
    assert "[bold]x:rocket:\\x1b]0;title\\x07\\nnext" in out
    assert "\x07" not in out and "\x1b]" not in out


@pytest.mark.parametrize("command", [["stats"], ["jobs", "list"]])
def test_no_colour_codes_through_a_pipe_even_under_force_color(sqlite_url, command):
    assert run("migrate", url=sqlite_url).returncode == 0
    assert run("enqueue", "reverse", "--payload", '"x"', url=sqlite_url).returncode == 0
    proc = run(*command, url=sqlite_url, env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert "default" in proc.stdout
    assert set(proc.stdout.splitlines()[1]) == {"-", " "}, "a plain rule under the header"


def test_json_output_is_json_dumps_with_indent_2(capsys):
    value = {"queues": {"é": {"pending": 1}}, "jobs": [job(1).to_json()]}
    print_json(value)
    assert capsys.readouterr().out == json.dumps(value, indent=2, ensure_ascii=False) + "\n"

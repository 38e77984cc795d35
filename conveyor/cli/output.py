"""Printing jobs and tables for the CLI.

On a terminal, tables are rich's: fitted to its width (long cells fold), a bold header,
statuses in colour. Anywhere else (a pipe, a file, a test) they are plain text that scripts
can rely on, whatever FORCE_COLOR says: no colour codes, no folding or cutting, a header, a
rule of dashes under each column, columns two spaces apart, no trailing spaces; and written
without rich, whose layout is slow for a long listing (docs/performance.md, "CLI tables").
Either way each cell is one line with its control characters escaped (`\\n`, `\\x1b`), so a
job's type or error can neither break a row nor send escape codes to the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import typer

from conveyor.jobs import Job, JobStatus
from conveyor.logs import escape

_STATUS_STYLES = {
    JobStatus.PENDING.value: "cyan",
    JobStatus.PROCESSING.value: "yellow",
    JobStatus.DONE.value: "green",
    JobStatus.FAILED.value: "red",
    JobStatus.CANCELLED.value: "dim",
}


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_job(job: Job) -> None:
    print_json(job.to_json())


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table on stdout: rich's on a terminal, stable plain text otherwise."""
    cells = [[escape("" if c is None else str(c)) for c in row] for row in rows]
    if sys.stdout.isatty():
        _rich_table(headers, cells)
    else:
        _plain_table(headers, cells)


def _plain_table(headers: Sequence[str], rows: list[list[str]]) -> None:
    lines = [list(headers), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    for n, line in enumerate(lines):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            typer.echo("  ".join("-" * w for w in widths))


def _rich_table(headers: Sequence[str], rows: list[list[str]]) -> None:
    # imported here: only a terminal's tables need rich
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")  # a narrow terminal folds, never cuts
    status = headers.index("status") if "status" in headers else -1
    for row in rows:
        # Text, not str: rich would read "[...]" in job data as markup, ":name:" as an emoji
        table.add_row(
            *(
                Text(c, style=_STATUS_STYLES.get(c, "") if i == status else "")
                for i, c in enumerate(row)
            )
        )
    Console(highlight=False).print(table)


def print_jobs(jobs: Sequence[Job]) -> None:
    print_table(
        ["id", "type", "queue", "status", "priority", "attempts", "run_at", "last_error"],
        [
            (
                j.id,
                j.type,
                j.queue,
                j.status.value,
                j.priority,
                f"{j.attempts}/{j.max_attempts}",
                j.run_at.isoformat(timespec="seconds"),
                (j.last_error or "").splitlines()[0][:60] if j.last_error else "",
            )
            for j in jobs
        ],
    )


def print_stats(stats: dict[str, dict[str, int]]) -> None:
    statuses = [s.value for s in JobStatus]
    rows = [
        [queue, *[counts.get(s, 0) for s in statuses], sum(counts.values())]
        for queue, counts in sorted(stats.items())
    ]
    if not rows:
        typer.echo("no jobs")
        return
    print_table(["queue", *statuses, "total"], rows)

"""Printing jobs and tables for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer

from conveyor.jobs import Job, JobStatus


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_job(job: Job) -> None:
    print_json(job.to_json())


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            typer.echo("  ".join("-" * w for w in widths))


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

"""GET / — the dashboard page.

`overview()` gathers what the page shows; the template only renders it. A live dashboard
grows from here by serving the same Overview as JSON (or SSE) and refreshing the page's
sections from it; the templates are split into a layout and blocks for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from conveyor.app import Conveyor
from conveyor.errors import ConveyorError
from conveyor.jobs import Job, JobStatus
from conveyor.metrics import Metrics

RECENT_JOBS = 50

_templates = Environment(
    loader=PackageLoader("conveyor.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class QueueRow:
    queue: str
    counts: dict[str, int]
    total: int


@dataclass(frozen=True)
class Overview:
    """Everything the page shows, read once per request."""

    statuses: list[str]
    queues: list[QueueRow] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    recent: list[Job] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    store_error: str | None = None


def overview(conveyor: Conveyor, metrics: Metrics, *, recent: int = RECENT_JOBS) -> Overview:
    statuses = [s.value for s in JobStatus]
    counters = metrics.snapshot()
    try:
        stats = conveyor.stats()
        jobs = conveyor.list_jobs(limit=recent)
    except ConveyorError as exc:
        return Overview(statuses=statuses, counters=counters, store_error=str(exc))
    rows = [
        QueueRow(queue, {s: counts.get(s, 0) for s in statuses}, sum(counts.values()))
        for queue, counts in sorted(stats.items())
    ]
    totals = {s: sum(row.counts[s] for row in rows) for s in statuses}
    totals["total"] = sum(row.total for row in rows)
    return Overview(statuses, rows, totals, jobs, counters)


def render(view: Overview) -> str:
    return _templates.get_template("index.html").render(view=view)


def router(conveyor: Conveyor, metrics: Metrics) -> APIRouter:
    pages = APIRouter(tags=["dashboard"])

    @pages.get("/", response_class=HTMLResponse, summary="The dashboard (HTML)")
    def dashboard() -> HTMLResponse:
        """Counts by queue and status, the most recent jobs, links to /docs and /metrics."""
        view = overview(conveyor, metrics)
        return HTMLResponse(render(view), status_code=503 if view.store_error else 200)

    return pages

"""The dashboard's pages (SPEC §9): GET / and GET /dashboard/..., and their script and styles.

A page is a Jinja2 template rendered from the request alone (layout, navigation, forms,
empty tables); it never reads the store. Its script, static/dashboard.js, fills it from
the JSON API and refreshes it every 2 s while the tab is visible. So the dashboard acts
through the same routes, checks and errors as every other client, and a page served
without the token (API_TOKEN set) holds nothing but the form that asks for it.

Each page carries a random token in a meta tag, also set as a SameSite=Strict cookie; the
script sends it as X-CSRF-Token with every state change (checked in api/security.py).
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from conveyor.api.auth import TOKEN_MISSING
from conveyor.api.security import PAGE_TOKEN_COOKIE
from conveyor.jobs import ID_MAX, JobStatus

PAGES = "/dashboard"
STATIC = "/dashboard/static"
JOBS_PAGE_SIZE = 50

# Only this server's script and styles run; job data can never become markup that runs,
# whatever a template or the script gets wrong.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes

_templates = Environment(
    loader=PackageLoader("conveyor.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

JobId = Annotated[int, Path(ge=1, le=ID_MAX)]


def serves_without_token(path: str) -> bool:
    """The dashboard's pages, scripts and styles: they hold no job data (api/auth.py)."""
    return path == "/" or path.startswith(PAGES + "/")


def static_files() -> StaticFiles:
    return StaticFiles(packages=[("conveyor.dashboard", "static")])


def router(*, token_required: bool) -> APIRouter:
    pages = APIRouter(tags=["dashboard"])

    def render(request: Request, template: str, **context: Any) -> HTMLResponse:
        missing = bool(getattr(request.state, TOKEN_MISSING, False))
        sent = request.cookies.get(PAGE_TOKEN_COOKIE, "")
        # Reuse the browser's token, so that pages open in other tabs keep working.
        page_token = sent if _PAGE_TOKEN.fullmatch(sent) else secrets.token_urlsafe(32)
        auth = "required" if missing else ("given" if token_required else "none")
        html = _templates.get_template(template).render(
            page_token=page_token, auth=auth, static=STATIC, pages=PAGES, **context
        )
        response = HTMLResponse(html, status_code=401 if missing else 200)
        if missing:
            response.headers["WWW-Authenticate"] = "Bearer"
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            PAGE_TOKEN_COOKIE, page_token, httponly=True, samesite="strict", path="/"
        )
        return response

    @pages.get("/", response_class=HTMLResponse, summary="The dashboard (HTML)")
    def overview(request: Request) -> HTMLResponse:
        """Counts by queue and status, finished and failed per minute, queue wait and
        workers, refreshed every 2 s; links to the other pages."""
        return render(request, "overview.html", statuses=_statuses())

    @pages.get(PAGES + "/queues", response_class=HTMLResponse, include_in_schema=False)
    def queues(request: Request) -> HTMLResponse:
        return render(request, "queues.html", statuses=_statuses())

    @pages.get(PAGES + "/workers", response_class=HTMLResponse, include_in_schema=False)
    def workers(request: Request) -> HTMLResponse:
        return render(request, "workers.html")

    @pages.get(PAGES + "/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs(request: Request) -> HTMLResponse:
        # The script reads the filter from the address; the form only shows it.
        shown = {key: request.query_params.get(key, "") for key in ("status", "queue", "type")}
        return render(
            request, "jobs.html", statuses=_statuses(), filters=shown, page_size=JOBS_PAGE_SIZE
        )

    @pages.get(PAGES + "/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job(request: Request, job_id: JobId) -> HTMLResponse:
        return render(request, "job.html", job_id=job_id)

    @pages.get(PAGES + "/periodic", response_class=HTMLResponse, include_in_schema=False)
    def periodic(request: Request) -> HTMLResponse:
        return render(request, "periodic.html")

    return pages


def _statuses() -> list[str]:
    return [status.value for status in JobStatus]

"""create_app: the FastAPI application — routers, error mapping and the middleware.

Request path, outermost first; each middleware answers from the request line and headers
(only the last two read the body), so a refused request never reaches a route:

1. SecurityHeadersMiddleware: nosniff and no-framing headers on every response below.
2. TrustedHostMiddleware (400): the Host header names this server (DNS rebinding).
3. CrossSiteMiddleware (403): no state change from another site's page (CSRF).
4. BearerAuthMiddleware (401): API_TOKEN, when set.
5. BodyLimitMiddleware (413): at most MAX_BODY_BYTES, buffered.
6. JsonBodyMiddleware (415): a state-changing request's body is JSON or empty.
7. FastAPI (422 on malformed input) → route → Conveyor / Store.

Host and cross-site checks come before authentication: a refused request is refused
whatever credentials the browser attached, and never answered with a login prompt. The
security middlewares are in api/security.py. Errors Conveyor raises on purpose map to
statuses here, so none of them becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor import __doc__ as conveyor_doc
from conveyor.api import auth, jobs, overview, security, system, workers
from conveyor.api import periodic as periodic_routes
from conveyor.api import queues as queue_routes
from conveyor.api.limits import BodyLimitMiddleware
from conveyor.api.prometheus import PrometheusExporter
from conveyor.app import Conveyor
from conveyor.dashboard import routes as dashboard
from conveyor.errors import (
    ConveyorError,
    InvalidJob,
    InvalidTransition,
    JobNotFound,
    StoreUnavailable,
    UnknownTask,
)
from conveyor.fleet import package_version
from conveyor.metrics import Metrics
from conveyor.settings import Settings

log = logging.getLogger("conveyor.api")

DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's scripts and styles

# Statuses of the errors Conveyor raises on purpose. Any other ConveyorError (a
# configuration problem found at request time) means this node cannot serve: 503.
_STATUS: list[tuple[type[ConveyorError], int]] = [
    (JobNotFound, 404),
    (InvalidTransition, 409),
    (StoreUnavailable, 503),
]


def create_app(conveyor: Conveyor, settings: Settings, metrics: Metrics) -> FastAPI:
    """The HTTP API over `conveyor`, sharing `metrics` with this process's worker pool.
    ConfigurationError for an empty API_TOKEN or a malformed ALLOWED_HOSTS."""
    token = auth.configured_token(settings.api_token)
    hosts = security.HostPolicy.from_settings(settings)
    # FastAPI's /docs and /redoc load their scripts from a CDN: blank pages on a network
    # without internet access, where job queues often run. fastapi-offline serves the same
    # pages with the scripts from this process (behind the same token as the rest).
    api = FastAPIOffline(
        title="Conveyor",
        summary=conveyor_doc,
        version=package_version(),
        description="Enqueue, inspect and act on jobs. JSON in and out.",
        static_url=DOCS_ASSETS,
    )
    exporter = PrometheusExporter(conveyor, metrics)
    # With a token, OpenAPI declares the bearer scheme (the middleware enforces it).
    secured = [Security(auth.bearer_scheme)] if token else []
    api.include_router(jobs.router(conveyor), dependencies=secured)
    api.include_router(periodic_routes.router(conveyor), dependencies=secured)
    api.include_router(queue_routes.router(conveyor), dependencies=secured)
    api.include_router(workers.router(conveyor), dependencies=secured)
    api.include_router(overview.router(conveyor), dependencies=secured)
    api.include_router(system.metrics_router(conveyor, metrics, exporter), dependencies=secured)
    api.include_router(system.probes_router(conveyor))
    api.include_router(dashboard.router(token_required=token is not None), dependencies=secured)
    api.mount(dashboard.STATIC, dashboard.static_files(), name="dashboard-static")
    _add_error_handlers(api)
    _document_task_types(api, conveyor)
    # add_middleware puts each one outside the previous: listed innermost first, so
    # requests meet them bottom-up (the order of the module docstring).
    api.add_middleware(security.JsonBodyMiddleware)
    api.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if token:
        api.add_middleware(
            auth.BearerAuthMiddleware, token=token, pages=dashboard.serves_without_token
        )
    api.add_middleware(security.CrossSiteMiddleware, token=token)
    api.add_middleware(security.TrustedHostMiddleware, policy=hosts)
    api.add_middleware(security.SecurityHeadersMiddleware)
    return api


def _document_task_types(api: FastAPI, conveyor: Conveyor) -> None:
    """When the app knows its tasks, OpenAPI lists them as the values `type` may take."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = build()
            if conveyor.tasks:
                field = schema["components"]["schemas"]["JobIn"]["properties"]["type"]
                field["enum"] = sorted(conveyor.tasks)
        return api.openapi_schema or build()

    api.openapi = openapi  # type: ignore[method-assign]


def _invalid(loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=422)


def _add_error_handlers(api: FastAPI) -> None:
    async def invalid_job(request: Request, exc: Exception) -> JSONResponse:
        kind = "unknown_task" if isinstance(exc, UnknownTask) else "invalid_job"
        return _invalid(["body"], str(exc), kind)

    async def request_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # The submitted values ("input") are left out: they may be large or secret.
        return JSONResponse({"detail": [_field_error(e) for e in exc.errors()]}, status_code=422)

    async def conveyor_error(request: Request, exc: Exception) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 503)
        if status == 503:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            # FastAPI's "error parsing the body": bytes that are not UTF-8, or JSON nested
            # or sized past what the parser takes. Malformed JSON, like any other: 422.
            return _invalid(["body"], f"malformed JSON: {exc.__cause__}"[:200], "json_invalid")
        return await http_exception_handler(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    api.add_exception_handler(InvalidJob, invalid_job)
    api.add_exception_handler(UnknownTask, invalid_job)
    api.add_exception_handler(RequestValidationError, request_invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(ConveyorError, conveyor_error)
    api.add_exception_handler(Exception, unexpected)


def _field_error(error: Any) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    msg = str(error.get("msg", "invalid"))
    kind = str(error.get("type", "value_error"))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error")
        msg = f"malformed JSON: {reason}" if reason else "malformed JSON"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")  # our validators' own one-line messages
    return {"loc": loc, "msg": msg, "type": kind}

"""/metrics, /healthz, /readyz."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from conveyor.api.prometheus import PrometheusExporter, wants_prometheus
from conveyor.api.schemas import ErrorOut, MetricsOut, StatusOut, error_responses
from conveyor.app import Conveyor
from conveyor.errors import ConveyorError
from conveyor.metrics import Metrics


def metrics_router(conveyor: Conveyor, metrics: Metrics, exporter: PrometheusExporter) -> APIRouter:
    api = APIRouter(tags=["system"])

    @api.get(
        "/metrics",
        response_model=MetricsOut,
        summary="Counters and queue depths (JSON, or Prometheus text on request)",
        responses={
            200: {
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
                "description": "JSON by default; Prometheus exposition when Accept asks for "
                "text/plain or application/openmetrics-text",
            },
            **error_responses(401, 503),
        },
    )
    def get_metrics(accept: Annotated[str | None, Header()] = None) -> Response:
        """The counters are this process's since it started; `queues` is read from the store.
        Prometheus output keeps serving the counters while the store is down
        (`conveyor_store_up 0`); JSON answers 503 then."""
        if wants_prometheus(accept):
            body, content_type = exporter.render(accept or "")
            return Response(body, headers={"Content-Type": content_type})
        return JSONResponse({**metrics.snapshot(), "queues": conveyor.stats()})

    return api


def probes_router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(tags=["system"])

    @api.get("/healthz", response_model=StatusOut, summary="The process is alive")
    def healthz() -> dict[str, str]:
        """Always 200 while the process serves HTTP; never needs the token."""
        return {"status": "ok"}

    @api.get(
        "/readyz",
        response_model=StatusOut,
        summary="The store is reachable and writable",
        responses={
            503: {"model": ErrorOut, "description": "the store is unreachable or cannot write"}
        },
    )
    def readyz() -> JSONResponse:
        """200 when the store answers and can take writes, 503 otherwise (with why); never
        needs the token. Cheap enough to poll every second: it takes no write lock (on
        SQLite: the file is the one first opened, its -wal and it are writable, one read)."""
        try:
            conveyor.ping()
        except ConveyorError as exc:
            return JSONResponse(
                {"status": "unavailable", "detail": f"store unavailable: {exc}"}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    return api

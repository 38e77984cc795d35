"""GET /overview (SPEC §9): what the dashboard's overview shows, as JSON."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor.api.schemas import OverviewOut, error_responses
from conveyor.app import Conveyor


def router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(tags=["fleet"])

    @api.get(
        "/overview",
        response_model=OverviewOut,
        summary="Counts, throughput per minute, queue wait and run time, workers",
        responses=error_responses(401, 503),
    )
    def overview() -> JSONResponse:
        """Jobs by queue and status; attempts finished, failed and retried per minute over
        the last hour; queue wait and run time p50/p95 over the last 5 minutes; live
        workers with their slots. Cheap to poll every second whatever the store holds."""
        return JSONResponse(conveyor.overview())

    return api

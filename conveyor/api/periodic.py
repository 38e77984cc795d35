"""GET /periodic (SPEC §7): the schedules of periodic jobs, next ticks and last jobs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor.api.schemas import PeriodicListOut, error_responses
from conveyor.app import Conveyor


def router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(tags=["periodic"])

    @api.get(
        "/periodic",
        response_model=PeriodicListOut,
        summary="Periodic jobs: schedule, time zone, next tick, last job",
        responses=error_responses(401, 503),
    )
    def list_periodic() -> JSONResponse:
        """Every schedule the store holds or the served app registers, by name. The next
        tick comes from the app's own schedule; a schedule the app no longer registers is
        listed as inactive, without a next tick."""
        listed = conveyor.list_periodic()
        return JSONResponse({"periodic": [item.to_json() for item in listed]})

    return api

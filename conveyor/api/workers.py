"""GET /workers (SPEC §9): the live worker processes, from the store's registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor.api.schemas import WorkersOut, error_responses
from conveyor.app import Conveyor


def router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(tags=["fleet"])

    @api.get(
        "/workers",
        response_model=WorkersOut,
        summary="Live worker processes",
        responses=error_responses(401, 503),
    )
    def list_workers() -> JSONResponse:
        """Every worker process whose heartbeat is current, by id: host, pid, queues,
        slots and how many are busy, when it started and last beat, its version."""
        return JSONResponse({"workers": [worker.to_json() for worker in conveyor.workers()]})

    return api

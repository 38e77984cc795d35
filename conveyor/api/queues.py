"""/queues routes (SPEC §7, §9): queue settings, held in the store for the whole fleet and
changed while it runs. Plain `def` routes, like /jobs; errors are ConveyorErrors, mapped in
api/app.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from conveyor.api.schemas import NO_NUL, QueueOut, QueueSettingsIn, QueuesOut, error_responses
from conveyor.app import Conveyor
from conveyor.jobs import NAME_MAX, QueueSettings
from conveyor.validation import queue_name


class _QueueNameConvertor(Convertor[str]):
    """`{name:queue}`: any text, a queue's name being any text (`reports/eu`, sent as is or
    with %2F; a line break, %0A, which Starlette's `path` convertor, `.*`, does not match)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("queue", _QueueNameConvertor())

QueueName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=NAME_MAX,
        description="the queue's name",
        json_schema_extra=NO_NUL,
    ),
    AfterValidator(queue_name),  # the rules (and messages) of a job's queue
]


def _queue(queue: QueueSettings) -> JSONResponse:
    return JSONResponse(queue.to_json())


def router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(prefix="/queues", tags=["queues"])

    @api.get(
        "",
        response_model=QueuesOut,
        summary="Queues: settings and job counts",
        responses=error_responses(401, 503),
    )
    def list_queues() -> JSONResponse:
        """Every queue that has jobs or settings, by name, with its settings and its jobs'
        counts by status."""
        return JSONResponse({"queues": [queue.to_json() for queue in conveyor.queues()]})

    @api.put(
        "/{name:queue}",
        response_model=QueueOut,
        summary="Set a queue's limits",
        responses=error_responses(401, 403, 413, 415, 422, 503),
    )
    def configure(name: QueueName, body: QueueSettingsIn) -> JSONResponse:
        """Only the settings given change; `null` clears a limit. Applies across all
        workers at once (idle ones are woken). Answers the queue's settings."""
        return _queue(conveyor.configure_queue(name, **body.changes()))

    @api.post(
        "/{name:queue}/pause",
        response_model=QueueOut,
        summary="Pause a queue",
        responses=error_responses(401, 403, 415, 422, 503),
    )
    def pause(name: QueueName) -> JSONResponse:
        """No job of the queue starts on any worker until it is resumed; running jobs
        finish, and enqueueing still works."""
        return _queue(conveyor.pause_queue(name))

    @api.post(
        "/{name:queue}/resume",
        response_model=QueueOut,
        summary="Resume a queue",
        responses=error_responses(401, 403, 415, 422, 503),
    )
    def resume(name: QueueName) -> JSONResponse:
        """Jobs of the queue start again at once; this also ends a fleet-wide backoff
        (`paused_until`)."""
        return _queue(conveyor.resume_queue(name))

    return api

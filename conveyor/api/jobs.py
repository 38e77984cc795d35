"""/jobs routes (SPEC §4). Plain `def` routes: Starlette runs them in its threadpool,
which suits the synchronous store. Errors are ConveyorErrors, mapped in api/app.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from conveyor.api.schemas import (
    BatchIn,
    JobIn,
    JobOut,
    JobsOut,
    QueueFilter,
    TypeFilter,
    error_responses,
)
from conveyor.app import Conveyor
from conveyor.errors import JobNotFound
from conveyor.jobs import ID_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, Job, JobStatus

JobId = Annotated[int, Path(ge=1, le=ID_MAX, description="the job's id")]


def _job(job: Job, status_code: int = 200) -> JSONResponse:
    return JSONResponse(job.to_json(), status_code=status_code)


def _jobs(jobs: list[Job], status_code: int = 200) -> JSONResponse:
    return JSONResponse({"jobs": [job.to_json() for job in jobs]}, status_code=status_code)


def router(conveyor: Conveyor) -> APIRouter:
    api = APIRouter(prefix="/jobs", tags=["jobs"])

    @api.post(
        "",
        response_model=JobOut,
        status_code=201,
        summary="Enqueue a job",
        responses={
            200: {"model": JobOut, "description": "an unfinished job already holds unique_key"},
            **error_responses(401, 403, 413, 415, 422, 503),
        },
    )
    def enqueue(body: JobIn) -> JSONResponse:
        """201 with the new job; 200 with the existing one when an unfinished job already
        holds the same `unique_key`."""
        result = conveyor.enqueue_job(conveyor.build_job(**body.fields()))
        response = _job(result.job, 201 if result.created else 200)
        response.headers["Location"] = f"/jobs/{result.job.id}"
        return response

    @api.post(
        "/batch",
        response_model=JobsOut,
        status_code=201,
        summary="Enqueue many jobs, all or none",
        responses=error_responses(401, 403, 413, 415, 422, 503),
    )
    def enqueue_batch(body: BatchIn) -> JSONResponse:
        """Validates every job first; one invalid job refuses the whole batch (422) and
        nothing is stored. The jobs come back in input order."""
        return _jobs(conveyor.enqueue_many([item.fields() for item in body.jobs]), 201)

    @api.get(
        "",
        response_model=JobsOut,
        summary="List jobs, newest first",
        responses=error_responses(401, 422, 503),
    )
    def list_jobs(
        status: JobStatus | None = None,
        type: Annotated[TypeFilter | None, Query()] = None,
        queue: Annotated[QueueFilter | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
        before_id: Annotated[
            int | None, Query(ge=1, le=ID_MAX, description="page: jobs with a smaller id")
        ] = None,
    ) -> JSONResponse:
        """Newest first. For the next page pass the last id you received as `before_id`."""
        return _jobs(
            conveyor.list_jobs(
                status=status, type=type, queue=queue, before_id=before_id, limit=limit
            )
        )

    @api.get(
        "/{job_id}",
        response_model=JobOut,
        summary="One job",
        responses=error_responses(401, 404, 422, 503),
    )
    def get_job(job_id: JobId) -> JSONResponse:
        job = conveyor.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        return _job(job)

    @api.post(
        "/{job_id}/cancel",
        response_model=JobOut,
        summary="Cancel a pending or processing job",
        responses=error_responses(401, 403, 404, 409, 415, 422, 503),
    )
    def cancel(job_id: JobId) -> JSONResponse:
        """409 when the job has already finished. A running job's worker learns of the
        cancellation at its next heartbeat and stops it; the run holds the job until then."""
        return _job(conveyor.cancel(job_id))

    @api.post(
        "/{job_id}/retry",
        response_model=JobOut,
        summary="Run a failed or cancelled job again",
        responses=error_responses(401, 403, 404, 409, 415, 422, 503),
    )
    def retry(job_id: JobId) -> JSONResponse:
        """Back to pending, runnable now; `attempts` is kept and `max_attempts` raised when
        needed so at least one more attempt runs. 409 unless failed or cancelled. A job
        cancelled while running starts again only once that run has stopped (or its lease
        has expired, if its worker died): never two runs at once."""
        return _job(conveyor.retry(job_id))

    return api

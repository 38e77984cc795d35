"""/jobs routes (SPEC §4). Plain `def` routes: Starlette runs them in its threadpool,
which suits the synchronous store; GET /jobs/{id} is async, so that `?wait=S` holds no
thread while it waits. Errors are ConveyorErrors, mapped in api/app.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.schemas import (
    BatchIn,
    CancelIn,
    CountOut,
    JobIn,
    JobOut,
    JobsOut,
    QueueFilter,
    RetryIn,
    StartsOut,
    TypeFilter,
    error_responses,
)
from conveyor.app import Conveyor
from conveyor.errors import JobNotFound
from conveyor.jobs import ID_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, Job, JobStatus
from conveyor.waiting import HTTP_WAIT_MAX_S

JobId = Annotated[int, Path(ge=1, le=ID_MAX, description="the job's id")]
WaitSeconds = Annotated[
    float | None,
    Query(
        gt=0,
        le=HTTP_WAIT_MAX_S,
        allow_inf_nan=False,
        description=(
            "wait up to this many seconds (more than 0, at most 60) for the job to finish:"
            " the answer comes as soon as it is done, failed or cancelled, or with the job"
            " as it is when the time is up"
        ),
    ),
]


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

    # Static paths: /jobs/cancel and /jobs/retry have one segment after /jobs, the actions on
    # one job two (/jobs/{job_id}/cancel), and GET /jobs/{job_id} takes no POST.
    @api.post(
        "/cancel",
        response_model=CountOut,
        summary="Cancel every job matching a filter",
        responses=error_responses(401, 403, 413, 415, 422, 503),
    )
    def cancel_jobs(body: CancelIn) -> JSONResponse:
        """Cancels every job in `status` (required: pending or processing), of `queue` and
        `type` when given, created before `created_before` when given, as POST
        /jobs/{id}/cancel does each: running ones are stopped by their workers within a
        second. Works in batches of a few hundred jobs, each one short transaction, while
        workers go on; answers when all are done with how many were cancelled (jobs claimed
        or finished meanwhile are not). 422 for a status the action does not apply to."""
        return JSONResponse({"count": conveyor.cancel_jobs(**body.filters())})

    @api.post(
        "/retry",
        response_model=CountOut,
        summary="Retry every job matching a filter",
        responses=error_responses(401, 403, 413, 415, 422, 503),
    )
    def retry_jobs(body: RetryIn) -> JSONResponse:
        """Retries every job in `status` (required: failed or cancelled) matching the other
        filters as POST /jobs/cancel does, as POST /jobs/{id}/retry does each, in batches;
        answers with how many were retried. A job whose unique_key an unfinished job holds is
        skipped. 422 for a status the action does not apply to."""
        return JSONResponse({"count": conveyor.retry_jobs(**body.filters())})

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
        summary="One job; with ?wait=S, once it has finished",
        responses=error_responses(401, 404, 422, 503),
    )
    async def get_job(job_id: JobId, wait: WaitSeconds = None) -> JSONResponse:
        """The job. With `wait=S` the answer waits until the job has finished (done, failed
        or cancelled) and comes at once when it does, woken by the store's notifications;
        when S seconds pass first it is the job as it is then: 200 either way (look at
        `status`). 404 at once for no such job."""
        if wait is None:
            job = await run_in_threadpool(conveyor.get_job, job_id)
        else:
            try:
                job = await conveyor.wait_async(job_id, wait)
            except TimeoutError:
                job = await conveyor.get_job_async(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        return _job(job)

    @api.get(
        "/{job_id}/dependents",
        response_model=JobsOut,
        summary="The jobs that depend on a job",
        responses=error_responses(401, 404, 422, 503),
    )
    def dependents(
        job_id: JobId,
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    ) -> JSONResponse:
        """The jobs that named this one in `depends_on`, in id order, whatever state either
        was in; pruned ones are left out. 404 for no such job."""
        if conveyor.get_job(job_id) is None:
            raise JobNotFound(f"job {job_id} not found")
        return _jobs(conveyor.dependents(job_id, limit=limit))

    @api.get(
        "/{job_id}/starts",
        response_model=StartsOut,
        summary="When each attempt of a job started",
        responses=error_responses(401, 404, 422, 503),
    )
    def starts(job_id: JobId) -> JSONResponse:
        """The start of each attempt, oldest first (the job page's timeline); the last is
        the job's `started_at`. Empty for a job never started; 404 for no such job."""
        times = conveyor.starts(job_id)
        if times is None:
            raise JobNotFound(f"job {job_id} not found")
        return JSONResponse({"starts": [t.isoformat() for t in times]})

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

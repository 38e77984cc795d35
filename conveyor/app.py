"""Conveyor: the task registry, the producer facade (SPEC §2) and the operator actions
(list, cancel, retry, stats, prune) that the HTTP API, the dashboard and the CLI share."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack, overload

from conveyor import fleet, tracing
from conveyor.backoff import BackoffPolicy, exponential_backoff
from conveyor.errors import InvalidJob, JobNotFound, UnknownTask
from conveyor.fleet import WorkerInfo
from conveyor.jobs import (
    FINISHED,
    LIST_LIMIT_DEFAULT,
    EnqueueResult,
    Job,
    JobStatus,
    NewJob,
    QueueSettings,
    utcnow,
)
from conveyor.payloads import encode_payload
from conveyor.periodic import (
    DEFAULT_TIMEZONE,
    Periodic,
    PeriodicListing,
    PeriodicSpec,
    Schedule,
    check_periodic_name,
    listings,
)
from conveyor.settings import Settings
from conveyor.stores import Store, open_store
from conveyor.tasks import Task, TaskOptions
from conveyor.validation import (
    QueueOptions,
    absent_id,
    bulk_filter,
    job_filter,
    new_job,
    queue_changes,
    queue_name,
    retention,
)
from conveyor.waiting import AsyncWaiter, FinishWatch, ThreadWaiter, timed_out, wait_timeout

_BATCH_FIELDS = frozenset(
    {
        "type",
        "payload",
        "priority",
        "queue",
        "max_attempts",
        "delay",
        "run_at",
        "unique_key",
        "concurrency_key",
        "depends_on",
        "on_dependency_failure",
    }
)
# The `*_async` methods run the synchronous store calls on this many threads of the app's
# own: however many coroutines enqueue at once, they use at most this many store
# connections (a PostgreSQL pool holds four). Why threads and not an async driver:
# docs/performance.md, "Enqueueing from async code".
ASYNC_THREADS = 4

T = TypeVar("T")


class Conveyor:
    """`Conveyor()` reads DATABASE_URL (environment, then .env); `Conveyor(url)` is explicit.
    Connects on first use; `close()` (or leaving a `with` block) releases connections.
    `listen_database_url` (else LISTEN_DATABASE_URL): PostgreSQL's connection for wake-ups
    when the URL reaches a transaction-mode pooler (SPEC §10)."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        max_attempts: int | None = None,
        listen_database_url: str | None = None,
    ):
        self._url = database_url
        self._listen_url = listen_database_url
        self._default_max_attempts = max_attempts
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.tasks: dict[str, Task] = {}
        self._enqueue_listeners: list[Callable[[], None]] = []
        # the threads of the `*_async` methods, started on first use; a lock of their own,
        # since `_lock` is held while a store opens (seconds, when it is unreachable)
        self._threads: ThreadPoolExecutor | None = None
        self._threads_lock = threading.Lock()
        # app.periodic(...) registrations by name (SPEC §7; built into jobs by periodic_jobs)
        self._periodic: dict[str, PeriodicSpec] = {}
        # the one listener and thread that answer every wait of this app (conveyor/waiting.py),
        # started by the first wait
        self._finish_watch: FinishWatch | None = None
        self._finish_watch_lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------
    # True once `database_url` was read from DATABASE_URL (the app was built without one)
    _url_from_environment = False

    @property
    def database_url(self) -> str:
        """The URL the app was built (or configured) with, else DATABASE_URL (environment,
        then .env), read once."""
        if self._url is None:
            self._url = Settings().database_url
            self._url_from_environment = True
        return self._url

    @property
    def has_own_database_url(self) -> bool:
        """Whether the app was built or configured with a URL (`Conveyor("sqlite:///jobs.db")`)
        rather than reading DATABASE_URL: the CLI keeps such a URL unless --database-url
        is given on the command line (SPEC §3 "Which database")."""
        return self._url is not None and not self._url_from_environment

    @property
    def listen_database_url(self) -> str | None:
        """The connection for LISTEN the app was built (or configured) with, else
        LISTEN_DATABASE_URL (environment, then .env), read once; None when neither is set."""
        if self._listen_url is None:
            self._listen_url = Settings().listen_database_url or ""
        return self._listen_url or None

    def configure(
        self,
        *,
        database_url: str | None = None,
        max_attempts: int | None = None,
        listen_database_url: str | None = None,
    ) -> None:
        """Override settings before first use: the CLI passes --database-url,
        --max-attempts and --listen-database-url when they are given on the command line,
        and only then."""
        if listen_database_url is not None and listen_database_url != self._listen_url:
            self.close()
            self._listen_url = listen_database_url
        if database_url is not None and database_url != self._url:
            self.close()
            self._url = database_url
        if database_url is not None:
            self._url_from_environment = False
        if max_attempts is not None:
            self._default_max_attempts = max_attempts

    @property
    def default_max_attempts(self) -> int:
        if self._default_max_attempts is None:
            self._default_max_attempts = Settings().max_attempts
        return self._default_max_attempts

    @property
    def store(self) -> Store:
        """The store, opened on first use; the schema is created if it is missing, and
        brought up to date if it is older than this code's (migrations are idempotent and
        serialised, so processes starting together do it once)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    store = open_store(self.database_url, listen_url=self.listen_database_url)
                    try:
                        if store.schema_version() < store.latest_version:
                            store.migrate()
                    except BaseException:
                        store.close()
                        raise
                    self._store = store
        return self._store

    def close(self) -> None:
        # Waits in progress end with StoreUnavailable; a later wait starts a new watch.
        with self._finish_watch_lock:
            watch, self._finish_watch = self._finish_watch, None
        if watch is not None:
            watch.stop()
        # Async calls already handed to the threads finish first, on the store they began
        # with; a later one starts new threads (and, like any call, reopens the store).
        with self._threads_lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks -------------------------------------------------------------------------
    @overload
    def task(self, func: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        backoff: BackoffPolicy | None = None,
        isolated: bool = False,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        backoff: BackoffPolicy | None = None,
        isolated: bool = False,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task: `@app.task` or `@app.task(name=..., queue=..., ...)`.
        `isolated=True` runs a sync task in a child process of the worker (SPEC §6)."""
        options = TaskOptions(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            backoff=backoff or exponential_backoff,
            isolated=bool(isolated),
        )
        # validate the options once, now, with the same rules as a job
        new_job(name or "x", None, queue=queue, priority=priority, max_attempts=max_attempts)
        if timeout is not None and timeout <= 0:
            raise InvalidJob("timeout must be a positive number of seconds")

        def register(fn: Callable[..., Any]) -> Task:
            task = Task(self, fn, name or fn.__name__, options)
            self.tasks[task.name] = task
            return task

        return register(func) if func is not None else register

    def add_enqueue_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each local enqueue commits (wakes this process's workers)."""
        self._enqueue_listeners.append(listener)

    def remove_enqueue_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._enqueue_listeners:
            self._enqueue_listeners.remove(listener)

    def _woken(self) -> None:
        for listener in list(self._enqueue_listeners):
            listener()

    # -- periodic jobs (SPEC §7) ----------------------------------------------------------------
    @overload
    def periodic(
        self,
        schedule: str,
        *,
        task: str,
        payload: object = None,
        name: str | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> PeriodicSpec: ...

    @overload
    def periodic(
        self,
        schedule: str,
        *,
        task: None = None,
        payload: object = None,
        name: str | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def periodic(
        self,
        schedule: str,
        *,
        task: str | None = None,
        payload: object = None,
        name: str | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> PeriodicSpec | Callable[[Callable[..., Any]], Task]:
        """Enqueue a job at every tick of `schedule`, a cron expression (5 fields, or 6 with
        the seconds first) in `timezone`, once per tick however many workers run (SPEC §7).
        `@app.periodic("*/5 * * * *")` over a function registers it as a task too (or takes
        the Task of `@app.task(...)` below it); `app.periodic("0 3 * * *", task="export",
        payload=...)` schedules a task by name. `name` (default: the task's) keys the
        schedule in the store. A bad expression or time zone, a name used twice, or a payload
        the task's signature refuses is InvalidJob here, or, for a task registered later,
        when a worker starts."""
        parsed = Schedule.parse(schedule, timezone)

        def register(type_name: str) -> PeriodicSpec:
            key = check_periodic_name(type_name if name is None else name)
            if key in self._periodic:
                raise InvalidJob(f"periodic job {key!r} is registered twice")
            spec = PeriodicSpec(key, parsed, type_name, payload, queue, priority, max_attempts)
            if type_name in self.tasks or not self.tasks:
                self._build_periodic(spec)  # check the payload now, where it can be
            self._periodic[key] = spec
            return spec

        if task is not None:
            return register(task)

        def decorate(fn: Callable[..., Any]) -> Task:
            registered = fn if isinstance(fn, Task) else self.task(fn)
            register(registered.name)
            return registered

        return decorate

    def periodic_jobs(self) -> dict[str, Periodic]:
        """The registered periodic jobs by name, each with the job its ticks enqueue (the
        task's queue, priority and max_attempts unless given); InvalidJob or UnknownTask for
        one whose task or payload does not fit."""
        return {name: self._build_periodic(spec) for name, spec in self._periodic.items()}

    def _build_periodic(self, spec: PeriodicSpec) -> Periodic:
        try:
            job = self.build_job(
                spec.type,
                spec.payload,
                queue=spec.queue,
                priority=spec.priority,
                max_attempts=spec.max_attempts,
            )
        except (InvalidJob, UnknownTask) as exc:
            raise type(exc)(f"periodic job {spec.name!r}: {exc}") from None
        return Periodic(spec.name, spec.schedule, job)

    def list_periodic(self, *, now: datetime | None = None) -> list[PeriodicListing]:
        """Every periodic job the store knows and this app registers, by name: schedule,
        time zone, next tick, the last tick enqueued and its job (SPEC §7; `conveyor periodic
        list`, GET /periodic). Rows of schedules the app no longer registers are kept (their
        last tick still guards against a late duplicate) and listed as inactive."""
        registered = {name: spec.schedule for name, spec in self._periodic.items()}
        return listings(self.store.list_periodic(), registered, now or utcnow())

    # -- producers -----------------------------------------------------------------------
    def build_job(
        self,
        type: str,
        payload: object = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        concurrency_key: str | None = None,
        depends_on: Sequence[int | str] | None = None,
        on_dependency_failure: str | None = None,
        batch_index: int | None = None,
    ) -> NewJob:
        """Validate one job, applying the task's own defaults; raises InvalidJob/UnknownTask.
        `batch_index`: the job's place in an enqueue_many batch ("@i" in depends_on)."""
        task = self.tasks.get(type) if isinstance(type, str) else None
        if task is None and self.tasks and isinstance(type, str):
            raise UnknownTask(f"unknown task type {type!r}; known: {', '.join(sorted(self.tasks))}")
        opts = task.options if task is not None else TaskOptions()
        job = new_job(
            type,
            payload,
            queue=queue if queue is not None else opts.queue,
            priority=priority if priority is not None else opts.priority,
            max_attempts=max_attempts if max_attempts is not None else opts.max_attempts,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            default_max_attempts=self.default_max_attempts,
            concurrency_key=concurrency_key,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
            batch_index=batch_index,
        )
        if task is not None:  # the payload must fit the task's signature (SPEC §2)
            task.check_payload(payload, job.payload_json)
        return job

    def enqueue(
        self,
        type: str,
        payload: object = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        connection: object | None = None,
        concurrency_key: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> Job:
        """Insert one job (or return the unfinished job holding `unique_key`).
        With `connection`, the job joins that open transaction and exists only if it commits.
        `concurrency_key` (a tenant, say) is what the queue's key_concurrency and fair
        settings go by (SPEC §7). With `depends_on` (ids of existing jobs) the job stays
        pending until they have all finished: all done, or, with
        `on_dependency_failure="run"`, whatever their status; with "cancel" (the default) a
        dependency that ends failed or cancelled cancels it (SPEC §8)."""
        return self.enqueue_job(
            self.build_job(
                type,
                payload,
                priority=priority,
                queue=queue,
                delay=delay,
                run_at=run_at,
                unique_key=unique_key,
                max_attempts=max_attempts,
                concurrency_key=concurrency_key,
                depends_on=depends_on,
                on_dependency_failure=on_dependency_failure,
            ),
            connection=connection,
        ).job

    def enqueue_job(self, job: NewJob, *, connection: object | None = None) -> EnqueueResult:
        """Insert an already validated job; returns the store's EnqueueResult. In a process
        that traces, in a span of its own whose context the job carries (conveyor/spans.py)."""
        spans = tracing.spans()
        if spans is None:
            result = self.store.enqueue(job, connection=connection)
        else:
            with spans.enqueue([job]) as span:
                result = self.store.enqueue(span.traced(job), connection=connection)
                span.enqueued([result])
        if connection is None and result.created:
            self._woken()
        return result

    def build_many(self, items: Sequence[Mapping[str, Any]]) -> list[NewJob]:
        """Validate batch items ({"type", "payload", ...} as in POST /jobs/batch)."""
        jobs = []
        # A batch mostly repeats one shape, {"type": t, "payload": p}: the first such item of
        # each type is validated in full, later ones copy its fields and encode (and check)
        # only their own payload (docs/performance.md, "Batch validation").
        by_type: dict[str, NewJob] = {}
        for index, item in enumerate(items):
            plain = type(item) is dict and len(item) == 2 and "payload" in item
            if plain:
                kind = item.get("type")
                first = by_type.get(kind) if type(kind) is str else None
                if first is not None:
                    try:
                        payload_json = encode_payload(item["payload"])
                        task = self.tasks.get(first.type)
                        if task is not None:
                            task.check_payload(item["payload"], payload_json)
                    except InvalidJob as exc:
                        raise InvalidJob(f"jobs[{index}]: {exc}") from None
                    jobs.append(
                        NewJob(
                            first.type,
                            payload_json,
                            first.queue,
                            first.priority,
                            first.max_attempts,
                        )
                    )
                    continue
            # dict first: the Mapping ABC check costs more than the rest of the checks here
            if not isinstance(item, dict) and not isinstance(item, Mapping):
                raise InvalidJob(f"jobs[{index}] must be an object")
            if not _BATCH_FIELDS.issuperset(item):
                unknown = ", ".join(sorted(set(item) - _BATCH_FIELDS))
                raise InvalidJob(f"jobs[{index}] has unknown fields: {unknown}")
            if "type" not in item:
                raise InvalidJob(f"jobs[{index}] needs a type")
            try:
                job = self.build_job(**item, batch_index=index)
            except (InvalidJob, UnknownTask) as exc:
                raise type(exc)(f"jobs[{index}]: {exc}") from None
            jobs.append(job)
            if plain:
                by_type[job.type] = job
        return jobs

    def enqueue_many(self, items: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Insert all jobs in one transaction, or none; returns them in input order."""
        jobs = self.build_many(items)
        if not jobs:
            return []
        spans = tracing.spans()
        if spans is None:
            results = self.store.enqueue_many(jobs)
        else:
            with spans.enqueue(jobs, batch=True) as span:
                results = self.store.enqueue_many([span.traced(job) for job in jobs])
                span.enqueued(results)
        if any(r.created for r in results):
            self._woken()
        return [r.job for r in results]

    # -- operators: what the HTTP API, the dashboard and the CLI do to jobs ---------------------
    def get_job(self, job_id: int) -> Job | None:
        """One job by id, or None when there is none."""
        if absent_id(job_id):
            return None
        return self.store.get_job(job_id)

    def dependents(self, job_id: int, *, limit: int = 100) -> list[Job]:
        """The jobs that named `job_id` in their depends_on, in id order (at most `limit`),
        whatever their state or the dependency's when they were enqueued."""
        if absent_id(job_id):
            return []
        return self.store.dependents(job_id, limit=limit)

    def starts(self, job_id: int) -> list[datetime] | None:
        """When each attempt of the job started, oldest first (the last is its `started_at`;
        the store keeps the last 101); None for no such job."""
        if absent_id(job_id):
            return None
        return self.store.starts(job_id)

    def wait(self, job_id: int, timeout: float) -> Job:
        """The job once it is finished (done, failed or cancelled): at once if it already
        is, else as soon as the store says so (SPEC §8). TimeoutError when `timeout`
        seconds pass first; JobNotFound for no such job; InvalidJob for a timeout that is
        not a finite number of seconds, 0 or more. Every wait of the app shares one
        listener and one thread (conveyor/waiting.py)."""
        limit = wait_timeout(timeout)
        deadline = time.monotonic() + limit
        _check_job_id(job_id)
        if absent_id(job_id):
            raise JobNotFound(f"job {job_id} not found")
        if limit == 0:
            return _finished(job_id, self.get_job(job_id), limit)
        watch = self._watch()
        waiter = ThreadWaiter(job_id)
        watch.watch(waiter)  # before the read: a finish after it is heard
        try:
            job = self.get_job(job_id)
            if job is None:
                raise JobNotFound(f"job {job_id} not found")
            if job.status in FINISHED:
                return job
            finished = waiter.wait(deadline - time.monotonic())
        finally:
            watch.forget(waiter)
        if finished is None:
            raise timed_out(job_id, limit)
        return finished

    def _watch(self) -> FinishWatch:
        """The app's FinishWatch, started on first use (its listener connected, or tried)."""
        watch = self._finish_watch
        if watch is None:
            store = self.store  # opened outside the lock: it may take seconds
            with self._finish_watch_lock:
                watch = self._finish_watch
                if watch is None:
                    watch = self._finish_watch = FinishWatch(store)
        watch.ready()
        return watch

    def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[Job]:
        """Jobs newest first, at most `limit` (1 to LIST_LIMIT_MAX), filtered by whichever of
        status, type and queue are given; for the next page pass the last id received as
        `before_id`. A filter value no job could have (too long, NUL) is InvalidJob."""
        query = job_filter(status=status, type=type, queue=queue, before_id=before_id, limit=limit)
        return self.store.list_jobs(query)

    def cancel(self, job_id: int) -> Job:
        """pending|processing → cancelled; returns the job. A running job is stopped by its
        worker within about a second and holds the job until it has. JobNotFound, or
        InvalidTransition when the job has already finished."""
        if absent_id(job_id):
            raise JobNotFound(f"job {job_id} not found")
        return self.store.cancel(job_id)

    def retry(self, job_id: int) -> Job:
        """failed|cancelled → pending, runnable now; returns the job. `attempts` is kept and
        `max_attempts` raised when needed so at least one more attempt runs; a job cancelled
        while running starts again only once that run has stopped (or its lease expired):
        never two runs at once. JobNotFound, or InvalidTransition for any other status."""
        if absent_id(job_id):
            raise JobNotFound(f"job {job_id} not found")
        return self.store.retry(job_id)

    def cancel_jobs(
        self,
        *,
        status: JobStatus | str,
        queue: str | None = None,
        type: str | None = None,
        created_before: datetime | str | None = None,
    ) -> int:
        """Cancel every job in `status` (required: pending or processing) of `queue` and `type`
        when given, created before `created_before` (a datetime with a timezone, or ISO 8601
        text) when given, as `cancel` does each (SPEC §8). Works in batches of a few hundred
        jobs, each one short transaction, so workers go on meanwhile; returns how many were
        cancelled (a job that was claimed or finished meanwhile is not). A bad filter is
        InvalidJob, and nothing changes."""
        query = bulk_filter(
            "cancel", status=status, queue=queue, type=type, created_before=created_before
        )
        return self.store.bulk_cancel(query)

    def retry_jobs(
        self,
        *,
        status: JobStatus | str,
        queue: str | None = None,
        type: str | None = None,
        created_before: datetime | str | None = None,
    ) -> int:
        """Retry every job in `status` (required: failed or cancelled) matching the other
        filters as `cancel_jobs` does, as `retry` does each, in batches; returns how many were
        retried. A job whose unique_key an unfinished job holds is skipped, not an error."""
        query = bulk_filter(
            "retry", status=status, queue=queue, type=type, created_before=created_before
        )
        retried = self.store.bulk_retry(query)
        if retried:
            self._woken()
        return retried

    def stats(self) -> dict[str, dict[str, int]]:
        """Job counts by queue and status, `{queue: {status: count}}` (non-zero counts only)."""
        return self.store.stats()

    def prune(self, *, older_than: timedelta) -> int:
        """Delete finished jobs (done, failed, cancelled) that finished more than
        `older_than` ago (0 to 100 years, else InvalidJob); returns how many."""
        return self.store.prune(older_than=retention(older_than))

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers and can take writes (/readyz)."""
        self.store.ping()

    # -- fleet observability (SPEC §9): conveyor/fleet.py ---------------------------------------
    def workers(self) -> list[WorkerInfo]:
        """The live worker processes in the store's registry, by id."""
        return self.store.list_workers()

    def overview(self) -> dict[str, Any]:
        """The dashboard's overview (GET /overview): counts by queue and status, attempts
        finished, failed and retried per minute over the last hour, queue wait and run time
        p50/p95 over the last 5 minutes, the live workers. Read from counts, aggregates and
        the registry: its cost does not grow with the finished jobs the store holds."""
        now = utcnow()
        since = now - timedelta(minutes=fleet.HOUR_MINUTES - 1)
        return fleet.overview(
            self.store.stats(), self.store.minute_stats(since), self.store.list_workers(), now
        )

    # -- queue settings (SPEC §7): held in the store, for the whole fleet, changed while it runs
    def queues(self) -> list[QueueSettings]:
        """Every queue that has jobs or settings, by name: its settings, and its job counts
        by status in `counts` (read as `stats()` reads them, so this costs what it costs)."""
        settings = {queue.name: queue for queue in self.store.list_queues()}
        counts = self.store.stats()
        return [
            replace(settings.get(name) or QueueSettings(name), counts=counts.get(name, {}))
            for name in sorted(settings.keys() | counts.keys())
        ]

    def configure_queue(self, name: str, **settings: Unpack[QueueOptions]) -> QueueSettings:
        """Set a queue's limits across all workers, while they run: `concurrency` (jobs of the
        queue processing at once), `rate_limit` (`"10/s"`, `"600/m"`, `"5000/h"`: jobs started
        in any such sliding window), `key_concurrency` (processing at once per
        `concurrency_key`), `fair` (claims rotate across concurrency keys). Only the settings
        given change; None (or `"none"`) clears a limit. A bad value is InvalidJob, an unknown
        setting TypeError, and nothing changes. Returns the queue's settings."""
        queue = queue_name(name)
        changes = queue_changes(settings)
        configured = self.store.configure_queue(queue, **changes)
        self._woken()  # a limit raised or cleared may release jobs now
        return configured

    def pause_queue(self, name: str) -> QueueSettings:
        """Stop starting the queue's jobs on every worker (running ones finish; enqueueing
        still works) until `resume_queue`. Returns the queue's settings."""
        return self.store.pause_queue(queue_name(name))

    def resume_queue(self, name: str) -> QueueSettings:
        """Start the queue's jobs again: ends a pause, and a fleet-wide backoff
        (`Snooze(queue=True)`'s `paused_until`) too. Returns the queue's settings."""
        resumed = self.store.resume_queue(queue_name(name))
        self._woken()
        return resumed

    # -- async code ---------------------------------------------------------------------------
    # The sync methods, each run on one of the app's ASYNC_THREADS threads: the same
    # validation, results, errors and wake-ups, and the event loop (any loop: asyncio's,
    # uvloop) goes on meanwhile. Safe from several loops and threads at once. Cancelling
    # the await before a thread has taken the call drops it; once taken, it completes.
    async def enqueue_async(
        self,
        type: str,
        payload: object = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        concurrency_key: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> Job:
        """`enqueue` for async code: awaits the store without blocking the event loop."""
        return await self._off_loop(
            functools.partial(
                self.enqueue,
                type,
                payload,
                priority=priority,
                queue=queue,
                delay=delay,
                run_at=run_at,
                unique_key=unique_key,
                max_attempts=max_attempts,
                concurrency_key=concurrency_key,
                depends_on=depends_on,
                on_dependency_failure=on_dependency_failure,
            )
        )

    async def enqueue_many_async(self, items: Sequence[Mapping[str, Any]]) -> list[Job]:
        """`enqueue_many` for async code (validation included: a large batch's too)."""
        return await self._off_loop(functools.partial(self.enqueue_many, items))

    async def get_job_async(self, job_id: int) -> Job | None:
        """`get_job` for async code."""
        return await self._off_loop(functools.partial(self.get_job, job_id))

    async def wait_async(self, job_id: int, timeout: float) -> Job:
        """`wait` for async code. The wait itself holds no thread: the app's watch resolves
        a future on this loop; only the read of the job's status when the wait begins (and
        the watch's start, on the first wait) runs on the app's threads."""
        limit = wait_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        _check_job_id(job_id)
        if absent_id(job_id):
            raise JobNotFound(f"job {job_id} not found")
        if limit == 0:
            return _finished(job_id, await self.get_job_async(job_id), limit)
        watch = self._finish_watch
        if watch is None or not watch.is_ready:
            watch = await self._off_loop(self._watch)
        waiter = AsyncWaiter(job_id, loop)
        watch.watch(waiter)  # before the read: a finish after it is heard
        try:
            job = await self.get_job_async(job_id)
            if job is None:
                raise JobNotFound(f"job {job_id} not found")
            if job.status in FINISHED:
                return job
            try:
                async with asyncio.timeout_at(deadline):
                    return await waiter.future
            except TimeoutError:
                raise timed_out(job_id, limit) from None
        finally:
            watch.forget(waiter)

    async def _off_loop(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # as asyncio.to_thread does
        for _ in range(2):
            threads = self._threads
            if threads is None:
                with self._threads_lock:
                    if self._threads is None:
                        self._threads = ThreadPoolExecutor(
                            ASYNC_THREADS, thread_name_prefix="conveyor-async"
                        )
                    threads = self._threads
            try:
                future = threads.submit(context.run, call)
            except RuntimeError:  # close() shut these threads down meanwhile: take new ones
                continue
            return await asyncio.wrap_future(future, loop=loop)
        raise RuntimeError("cannot run the call: the app is closing (or the interpreter exits)")


def _check_job_id(job_id: object) -> None:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise InvalidJob(f"a job id is an integer, not {type(job_id).__name__}")


def _finished(job_id: int, job: Job | None, timeout: float) -> Job:
    """A wait's answer from one read: the finished job, JobNotFound or TimeoutError."""
    if job is None:
        raise JobNotFound(f"job {job_id} not found")
    if job.status not in FINISHED:
        raise timed_out(job_id, timeout)
    return job

"""Conveyor's OpenTelemetry spans (SPEC §9): a PRODUCER span per enqueue, a CONSUMER span per
run, and the enqueuing trace context carried in the job's `trace_context` column. Imported
only by a process that traces (conveyor/tracing.py decides); it needs opentelemetry-api,
which `conveyor[otel]` installs with the SDK."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from conveyor import jsontext
from conveyor.fleet import package_version
from conveyor.jobs import EnqueueResult, Finish, Job, NewJob

TRACER_NAME = "conveyor"

# What a run's span says when the run stopped without an outcome, by the pool's reason.
_STOPPED = {
    "cancelled": "cancelled",  # by an operator
    "lost": "lost",  # its lease was recovered by another worker
    "expiring": "lost",  # stopped before its unrenewed lease could expire
    "shutdown": "released",  # handed back to pending at shutdown
}


class Spans:
    """Spans from one TracerProvider, under the tracer named "conveyor"."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer(TRACER_NAME, package_version())

    @contextmanager
    def enqueue(self, jobs: Sequence[NewJob], *, batch: bool = False) -> Iterator[Enqueue]:
        """The span of one enqueue call (`batch`: enqueue_many's, one for all its jobs),
        current while the store inserts them."""
        first = jobs[0]
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "conveyor",
            "messaging.operation.type": "send",
        }
        if all(job.type == first.type for job in jobs):
            attributes["conveyor.job.type"] = first.type
        if all(job.queue == first.queue for job in jobs):
            attributes["conveyor.job.queue"] = first.queue
            attributes["messaging.destination.name"] = first.queue
        if batch:
            attributes["conveyor.job.count"] = len(jobs)
        name = "enqueue_many" if batch else f"enqueue {first.type}"
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            yield Enqueue(span, _carrier())

    @contextmanager
    def execution(self, job: Job) -> Iterator[Execution]:
        """The span of one run of `job`, current while its task runs: a child of the span
        that enqueued it (a new trace for a job enqueued outside any span)."""
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "conveyor",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "conveyor.job.id": job.id,
            "conveyor.job.type": job.type,
            "conveyor.job.queue": job.queue,
            "conveyor.job.attempt": job.attempts,
        }
        with self._tracer.start_as_current_span(
            f"process {job.type}",
            context=_parent(job.trace_context),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            # the run's only exception is its cancellation, which `stopped` describes
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield Execution(span)

    @staticmethod
    def current_ids() -> dict[str, str] | None:
        """The current span's ids as hex, or None when no span is active."""
        return _ids(trace.get_current_span())


class Enqueue:
    """An enqueue's span: the context its jobs carry, and the ids the store gave them."""

    def __init__(self, span: Span, carrier: str | None) -> None:
        self._span = span
        self.carrier = carrier

    def traced(self, job: NewJob) -> NewJob:
        """`job` carrying this span's context (a copy: the caller's job stays as it was)."""
        return job if self.carrier is None else replace(job, trace_context=self.carrier)

    def enqueued(self, results: Sequence[EnqueueResult]) -> None:
        if len(results) == 1:
            self._span.set_attribute("conveyor.job.id", results[0].job.id)
            # False: an unfinished job held the unique_key, and it keeps its own context
            self._span.set_attribute("conveyor.job.created", results[0].created)
        else:
            self._span.set_attribute("conveyor.job.ids", [result.job.id for result in results])


class Execution:
    """A run's span: its outcome once the run ends."""

    def __init__(self, span: Span) -> None:
        self._span = span

    @property
    def ids(self) -> dict[str, str] | None:
        return _ids(self._span)

    def finished(self, finish: Finish) -> None:
        """The run returned its outcome: done, retry, failed or snoozed."""
        self._span.set_attribute("conveyor.job.outcome", finish.kind.value)
        if finish.error is not None:
            first_line = finish.error.split("\n", 1)[0]
            self._span.set_status(Status(StatusCode.ERROR, first_line))

    def stopped(self, reason: str | None) -> None:
        """The run was stopped (its asyncio task cancelled) for `reason` (the pool's)."""
        outcome = _STOPPED.get(reason or "", "stopped")
        self._span.set_attribute("conveyor.job.outcome", outcome)
        if outcome == "lost":
            self._span.set_status(Status(StatusCode.ERROR, "lease lost"))


def _carrier() -> str | None:
    """The current context as the propagator writes it into headers (W3C `traceparent`,
    `tracestate` if any, by default), as one JSON object; None outside any span."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return jsontext.dumps(headers) if headers else None


def _parent(carrier: str | None) -> Context:
    """The context a job's `trace_context` holds; an empty one (a new trace) if none."""
    if carrier is None:
        return Context()
    try:
        headers = jsontext.loads(carrier)
    except ValueError:
        return Context()
    if not isinstance(headers, dict):
        return Context()
    headers = {k: v for k, v in headers.items() if isinstance(v, str)}
    return propagate.extract(headers, context=Context())


def _ids(span: Span) -> dict[str, str] | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }

"""An app for `conveyor worker --app tests.support.traced_app:app` that traces: it installs an
OpenTelemetry SDK TracerProvider whose finished spans are appended, one JSON line each, to
the file named by $CONVEYOR_TEST_SPANS, for the test process to read."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from conveyor import Conveyor


def span_record(span: ReadableSpan) -> dict[str, object]:
    """What the tests look at of a finished span, as JSON."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": None if span.parent is None else format(span.parent.span_id, "016x"),
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


class FileSpanExporter(SpanExporter):
    """Appends each finished span to a file (SimpleSpanProcessor exports it as it ends)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        with open(self.path, "a") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(FileSpanExporter(os.environ["CONVEYOR_TEST_SPANS"]))
)
trace.set_tracer_provider(provider)

app = Conveyor()


@app.task
def traced(word: str) -> str:
    # a span of the task's own: a child of the run's span
    with trace.get_tracer("tests").start_as_current_span("inside the task"):
        return word[::-1]


@app.task(max_attempts=1)
def traced_failure() -> None:
    raise ValueError("no good")

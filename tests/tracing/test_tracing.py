"""OpenTelemetry tracing (SPEC §9) on both stores: one trace from an HTTP request that enqueues a
job to the span of the worker process that runs it; enqueue spans and the stored context;
trace ids on JSON log lines; and nothing imported or stored by a process that does not trace."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from conveyor import Conveyor, tracing
from conveyor.logs import JsonFormatter
from tests.api.servers import ThreadedApi, api_settings
from tests.support.procs import CONVEYOR, ROOT
from tests.support.wait import wait_until


def _reset_tracer_provider() -> None:
    # The API lets a process set its provider once; tests set one each and take it back
    # (as OpenTelemetry's own test utilities do), so later tests run untraced.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """This process traces for the test: an SDK provider that keeps every finished span."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    _reset_tracer_provider()
    trace.set_tracer_provider(provider)
    yield exported
    _reset_tracer_provider()
    provider.shutdown()


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    conveyor = Conveyor(store_url)
    yield conveyor
    conveyor.close()


def _hex(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


def _one(items: Any, what: str) -> Any:
    assert len(items) == 1, f"{what}: {items}"
    return items[0]


def _traceparent(trace_context: str | None) -> str:
    assert trace_context is not None
    return str(json.loads(trace_context)["traceparent"])


def _chain_top(span: Any, spans: list[Any]) -> tuple[list[SpanKind], Any]:
    """Walk `span`'s parents among `spans`: the kinds met, and the first parent outside them."""
    by_id = {s.context.span_id: s for s in spans}
    kinds = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        kinds.append(span.kind)
    return kinds, span.parent


@pytest.mark.process
def test_one_trace_runs_from_an_http_request_to_the_worker_that_ran_its_job(
    app, store_url, exporter, tmp_path
):
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
    with ThreadedApi(app, api_settings()) as server, server.client() as client:
        ok = client.post(
            "/jobs", json={"type": "traced", "payload": {"word": "abc"}}, headers=headers
        )
        bad = client.post(
            "/jobs", json={"type": "traced_failure", "max_attempts": 1}, headers=headers
        )
    assert ok.status_code == bad.status_code == 201
    ok_id, bad_id = ok.json()["id"], bad.json()["id"]
    assert "trace_context" not in ok.json()  # not one of SPEC's job fields

    spans_file, log_file = tmp_path / "spans.jsonl", tmp_path / "worker.log"
    env = {**os.environ, "CONVEYOR_TEST_SPANS": str(spans_file), "LOG_FORMAT": "json"}
    with log_file.open("wb") as log:
        worker = subprocess.Popen(
            [CONVEYOR, "worker", "--app", "tests.support.traced_app:app"]
            + ["--database-url", store_url, "--log-level", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def runs() -> list[dict[str, Any]]:
            if not spans_file.exists():
                return []
            records = [json.loads(line) for line in spans_file.read_text().splitlines()]
            found = [r for r in records if r["kind"] == "CONSUMER"]
            return records if len(found) == 2 else []

        records = wait_until(runs, timeout=15, message="the worker's run spans")
        assert app.wait(bad_id, 10).status == "failed"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(15)

    produced = exporter.get_finished_spans()
    enqueue = _one(
        [
            s
            for s in produced
            if s.kind == SpanKind.PRODUCER and s.attributes["conveyor.job.id"] == ok_id
        ],
        "the enqueue span of the job",
    )
    assert enqueue.name == "enqueue traced"
    assert enqueue.context.trace_id == int(trace_id, 16)
    # ... below the HTTP request's server span, below the caller's span from traceparent
    kinds, top = _chain_top(enqueue, list(produced))
    assert SpanKind.SERVER in kinds
    assert top.is_remote and _hex(top.span_id, 16) == caller_span
    # the job carries the enqueue span's context
    enqueue_span = _hex(enqueue.context.span_id, 16)
    assert _traceparent(app.get_job(ok_id).trace_context).startswith(
        f"00-{trace_id}-{enqueue_span}-"
    )

    run = _one([r for r in records if r["name"] == "process traced"], "the run of the job")
    assert run["kind"] == "CONSUMER"
    assert run["trace_id"] == trace_id
    assert run["parent_span_id"] == enqueue_span
    assert run["status"] == "UNSET"
    assert run["attributes"] == {
        "messaging.system": "conveyor",
        "messaging.operation.type": "process",
        "messaging.destination.name": "default",
        "conveyor.job.id": ok_id,
        "conveyor.job.type": "traced",
        "conveyor.job.queue": "default",
        "conveyor.job.attempt": 1,
        "conveyor.job.outcome": "done",
    }
    inside = _one([r for r in records if r["name"] == "inside the task"], "the task's span")
    assert inside["parent_span_id"] == run["span_id"]  # the run's span is current in the task

    failed = _one([r for r in records if r["name"] == "process traced_failure"], "failed run")
    assert failed["trace_id"] == trace_id
    assert failed["status"] == "ERROR"
    assert failed["attributes"]["conveyor.job.outcome"] == "failed"

    # the run's JSON log lines carry its trace, written inside its span or after it ended
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    for msg in ("processing", "finished"):
        line = _one([ln for ln in lines if ln["msg"] == msg and ln.get("job") == ok_id], msg)
        assert (line["trace_id"], line["span_id"]) == (trace_id, run["span_id"])


def test_every_enqueue_path_has_a_producer_span_whose_context_the_jobs_carry(app, exporter):
    # outside any span: the enqueue's span starts a trace
    alone = app.enqueue("t", {"n": 1}, queue="q")
    span = _one(exporter.get_finished_spans(), "the enqueue span")
    assert span.parent is None and span.kind == SpanKind.PRODUCER
    assert span.attributes["conveyor.job.id"] == alone.id
    assert span.attributes["conveyor.job.queue"] == "q"
    ids = (_hex(span.context.trace_id, 32), _hex(span.context.span_id, 16))
    assert _traceparent(app.get_job(alone.id).trace_context).startswith("00-{}-{}-".format(*ids))

    exporter.clear()
    with trace.get_tracer("tests").start_as_current_span("caller") as caller:
        # each of the stores' insert paths: unique keys, dependencies ("@0"), one by one
        keyed = app.enqueue_many(
            [{"type": "t", "payload": n, "unique_key": f"k{n}"} for n in (1, 2)]
        )
        chained = app.enqueue_many(
            [{"type": "t", "payload": 3}, {"type": "t", "payload": 4, "depends_on": ["@0"]}]
        )
        later = asyncio.run(app.enqueue_async("t", 5))
    produced = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert [s.name for s in produced] == ["enqueue_many", "enqueue_many", "enqueue t"]
    for span, jobs in zip(produced, [keyed, chained, [later]], strict=True):
        assert span.parent.span_id == caller.get_span_context().span_id
        for job in jobs:
            assert _hex(span.context.span_id, 16) in _traceparent(app.get_job(job.id).trace_context)
    assert produced[0].attributes["conveyor.job.count"] == 2
    assert list(produced[0].attributes["conveyor.job.ids"]) == [job.id for job in keyed]


def test_the_cli_enqueues_in_a_span_whose_context_the_job_carries(app, store_url, tmp_path):
    # a CLI process traces when its --app module sets a provider
    spans_file = tmp_path / "spans.jsonl"
    subprocess.run(
        [CONVEYOR, "enqueue", "traced", "--payload", '{"word": "cli"}']
        + ["--app", "tests.support.traced_app:app", "--database-url", store_url],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_TEST_SPANS": str(spans_file)},
        capture_output=True,
        check=True,
        timeout=60,
    )
    (job,) = app.list_jobs()
    span = _one([json.loads(line) for line in spans_file.read_text().splitlines()], "spans")
    assert (span["name"], span["kind"]) == ("enqueue traced", "PRODUCER")
    assert span["attributes"]["conveyor.job.id"] == job.id
    traceparent = _traceparent(app.get_job(job.id).trace_context)
    assert traceparent.startswith(f"00-{span['trace_id']}-{span['span_id']}-")


def test_a_process_that_does_not_trace_stores_no_context(app):
    # OpenTelemetry is loaded here (this module imports it) but no provider is set
    assert tracing.spans() is None
    single = app.enqueue("t", 1)
    batch = app.enqueue_many([{"type": "t", "payload": 2}, {"type": "t", "payload": 3}])
    for job in [single, *batch]:
        assert app.get_job(job.id).trace_context is None


def test_json_log_lines_carry_the_current_span(exporter):
    formatter = JsonFormatter()

    def line() -> dict[str, Any]:
        record = logging.LogRecord("conveyor", logging.INFO, __file__, 1, "hello", None, None)
        return dict(json.loads(formatter.format(record)))

    assert "trace_id" not in line()
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        inside = line()
    context = span.get_span_context()
    assert inside["trace_id"] == _hex(context.trace_id, 32)
    assert inside["span_id"] == _hex(context.span_id, 16)
    assert "trace_id" not in line()


# Enqueue, run and log in a fresh interpreter; print what it imported and stored.
_UNTRACED = """
import asyncio, json, logging, sys

if sys.argv[2] == "blocked":
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ImportError(f"{name} is not installed")
            return None

    sys.meta_path.insert(0, Blocker())

from conveyor import Conveyor
from conveyor.logs import JsonFormatter
from conveyor.worker import PoolConfig, WorkerPool

app = Conveyor(sys.argv[1])

@app.task
def add(a: int, b: int) -> int:
    logging.getLogger("conveyor.test").info("adding")
    return a + b

async def run() -> int:
    job = await app.enqueue_async("add", {"a": 1, "b": 2})
    pool = WorkerPool(app, PoolConfig(concurrency=1))
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    done = await app.wait_async(job.id, 10)
    stop.set()
    await runner
    return done.id

job = app.get_job(asyncio.run(run()))
record = logging.LogRecord("conveyor", logging.INFO, "x", 1, "hello", None, None)
print(json.dumps({
    "result": job.result,
    "trace_context": job.trace_context,
    "log": sorted(json.loads(JsonFormatter().format(record))),
    "imported": sorted(name for name in sys.modules if name.startswith("opentelemetry")),
}))
"""


@pytest.mark.parametrize("opentelemetry", ["installed", "blocked"])
def test_without_tracing_nothing_imports_opentelemetry(opentelemetry, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _UNTRACED, f"sqlite:///{tmp_path / 'jobs.db'}", opentelemetry],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen == {
        "result": 3,
        "trace_context": None,
        "log": ["level", "logger", "msg", "ts"],
        "imported": [],
    }

"""Whether this process traces with OpenTelemetry (SPEC §9), decided without importing it.

Conveyor traces once the process has loaded the OpenTelemetry API and set a TracerProvider
(the SDK's, a vendor's, `opentelemetry-instrument`'s): then `spans()` gives the spans of
conveyor/spans.py. Until then it answers None for the price of a dictionary lookup, and
nothing imports OpenTelemetry. Not "trace when the package is installed": FastAPI depends
on opentelemetry-api, so it nearly always is, and importing it would cost every producer
and worker tens of milliseconds at start for spans that no provider would record.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.spans import Spans

# The provider last seen and the Spans built for it (None for a provider that records
# nothing). A race between threads builds the same Spans twice, which is harmless.
_seen: object = None
_spans: Spans | None = None
# A provider named by the environment is loaded by the API's first get_tracer_provider().
_NAMED_BY_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()


def spans() -> Spans | None:
    """This process's spans, or None when it does not trace."""
    global _seen, _spans
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    # Until a provider is set, get_tracer_provider() looks the environment up on every call,
    # which a process that loaded the API but sets none (serve) would pay per enqueue and
    # run; the API's own global says "none yet" for the price of an attribute read.
    unset = getattr(api, "_TRACER_PROVIDER", _UNKNOWN) is None
    if unset and not _NAMED_BY_ENVIRONMENT:
        return None
    provider: object = api.get_tracer_provider()
    if provider is not _seen:
        _spans = _spans_for(api, provider)
        _seen = provider
    return _spans


def _spans_for(api: ModuleType, provider: object) -> Spans | None:
    # The API's placeholders until a provider is set: nothing they make is recorded.
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    from conveyor.spans import Spans

    return Spans(provider)  # type: ignore[arg-type]


def log_ids() -> dict[str, str] | None:
    """`trace_id` and `span_id` of the current span, for a JSON log line; None outside one."""
    active = spans()
    return None if active is None else active.current_ids()

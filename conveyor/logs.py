"""Log formatting: SPEC §3's text lines, or the same fields as JSON lines."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from conveyor import tracing

# Field order of a job line; the slot name (`worker`) is shown as the [WORKER-n] prefix.
_FIELDS = ("job", "type", "priority", "attempt", "status", "duration", "error", "retry_in")


def job_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a job log line: `log.info("processing", extra=job_fields(job=1))`."""
    return {"conveyor": fields}


# What could end or rewrite a line of the log in a terminal or a log pipeline: C0 controls
# (newline, carriage return, tab, escape, ...), DEL, C1 controls (NEL among them) and
# Unicode's line and paragraph separators. A job's type, queue or error, a task's message,
# a worker id: logged values can hold any of them, and a raw newline would let a value
# forge a log line of its own.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` on one line: each control character shown as an escape (\\n, \\r, \\t,
    \\x1b, \\u2028, ...)."""
    return _CONTROL.sub(_escape_char, text)


def _quote(text: str) -> str:
    """`text` as a JSON string literal with every control character escaped (json.dumps
    leaves DEL, C1 controls and U+2028/U+2029 as they are)."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _text_value(key: str, value: Any) -> str:
    if key in ("duration", "retry_in") and isinstance(value, float):
        return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"
    if isinstance(value, int):  # ids, priorities, attempts: nothing to escape
        return str(value)
    text = str(value)
    if key == "error":  # the first line of a failure, the rest is in the job's last_error
        return _quote(text.splitlines()[0] if text else text)
    if " " in text or _CONTROL.search(text):
        return _quote(text)
    return text


def _indent(text: str) -> str:
    """Multi-line text under a record (a traceback): each line indented and escaped, so
    that none can pass for a record of its own, whatever an exception's message holds."""
    return "\n".join("    " + escape(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """`2026-11-24T16:30:00.123Z INFO [WORKER-1] processing job=123 type=payment attempt=1`

    One record, one line: control characters in the message and in field values are shown
    escaped (a value with spaces or control characters is quoted as a JSON string), and a
    traceback follows on indented lines."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        fields: dict[str, Any] | None = getattr(record, "conveyor", None)
        message = escape(record.getMessage())
        if fields is not None:
            parts = (
                [f"[{escape(str(fields['worker']))}]", message] if "worker" in fields else [message]
            )
            parts += [f"{k}={_text_value(k, fields[k])}" for k in _FIELDS if k in fields]
            message = " ".join(parts)
        line = f"{ts}Z {record.levelname} {message}"
        if record.exc_info:
            line += "\n" + _indent(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, msg, `trace_id` and `span_id` while an
    OpenTelemetry span is active, then the job fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
        }
        ids = tracing.log_ids()  # the current span's; a line's own fields take precedence
        if ids is not None:
            out.update(ids)
        out.update(getattr(record, "conveyor", None) or {})
        if isinstance(out.get("duration"), float):
            out["duration"] = round(out["duration"], 6)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _CliHandler(logging.StreamHandler[TextIO]):
    """The handler `setup_logging` installs, so that it replaces only its own."""


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """The `conveyor` command's logging: its lines on stderr, in text or JSON. For the CLI
    process only: library use (`Conveyor(...)`, a WorkerPool in your own program) never
    touches logging, and this replaces no handler but one it installed itself."""
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _CliHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's per-request access lines would drown the job lines
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, root.level))
    # the pool reports every connection it grows or loses; our own lines say what matters
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))

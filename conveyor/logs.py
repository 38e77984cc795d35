"""Log formatting: SPEC §3's text lines, or the same fields as JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Field order of a job line; the slot name (`worker`) is shown as the [WORKER-n] prefix.
_FIELDS = ("job", "type", "priority", "attempt", "status", "duration", "error", "retry_in")


def job_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a job log line: `log.info("processing", extra=job_fields(job=1))`."""
    return {"conveyor": fields}


def _text_value(key: str, value: Any) -> str:
    if key in ("duration", "retry_in") and isinstance(value, float):
        return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"
    text = str(value)
    if key == "error" or " " in text:
        return json.dumps(text.splitlines()[0] if text else text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`2026-11-24T16:30:00.123Z INFO [WORKER-1] processing job=123 type=payment attempt=1`"""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        fields: dict[str, Any] | None = getattr(record, "conveyor", None)
        message = record.getMessage()
        if fields is not None:
            parts = [f"[{fields['worker']}]", message] if "worker" in fields else [message]
            parts += [f"{k}={_text_value(k, fields[k])}" for k in _FIELDS if k in fields]
            message = " ".join(parts)
        line = f"{ts}Z {record.levelname} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, msg, then the job fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
        }
        out.update(getattr(record, "conveyor", None) or {})
        if isinstance(out.get("duration"), float):
            out["duration"] = round(out["duration"], 6)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's per-request access lines would drown the job lines
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, root.level))
    # the pool reports every connection it grows or loses; our own lines say what matters
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))

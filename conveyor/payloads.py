"""JSON encoding of payloads and results, with the checks both stores rely on."""

from __future__ import annotations

import re
from typing import cast

from conveyor import jsontext
from conveyor.errors import InvalidJob
from conveyor.jobs import JSONValue

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 1024 * 1024
# Deeper JSON cannot be read back by every parser on the way (Python's json module recurses,
# PostgreSQL's jsonb has its own limit): refuse it at the door, not at claim time.
MAX_DEPTH = 100
# A NUL in any string (or key) is written by the encoder as the escape \u0000. The text
# \u0000 itself (a backslash, then u0000) is written with its backslash escaped: \\u0000.
# So an escape stands for a NUL only when its backslash is not itself escaped, i.e. when an
# even number of backslashes (none, or escaped pairs) comes before it.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class ResultError(ValueError):
    """A task's return value cannot be stored (not JSON, too large, NUL characters)."""


def _depth(text: str) -> int:
    """Deepest nesting of arrays/objects in JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _check_text(text: str, what: str, limit: int, error: type[ValueError]) -> None:
    # counting brackets is C-fast; only text that could be too deep is walked
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise error(f"{what} is nested more than {MAX_DEPTH} levels deep")
    # PostgreSQL cannot store NUL in text or jsonb; refuse it on both stores alike.
    if "\\u0000" in text and _NUL_ESCAPE.search(text):  # substring first: C-fast
        raise error(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    if text.isascii():  # C-fast; only other text needs encoding to be sized and checked
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise error(f"{what} contains invalid unicode (a lone surrogate)") from None
    if size > limit:
        raise error(f"{what} is {size} bytes, more than the limit of {limit}")


def encode_payload(payload: object) -> str:
    """Payload → JSON text; InvalidJob when it is not JSON-serialisable or too large."""
    try:
        text = jsontext.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"payload is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidJob(
            f"payload is nested more than {MAX_DEPTH} levels deep (or contains itself)"
        ) from None
    _check_text(text, "payload", MAX_PAYLOAD_BYTES, InvalidJob)
    return text


def encode_result(result: object) -> str:
    """A task's return value → JSON text; ResultError when it cannot be stored."""
    if result is None:  # most tasks return nothing
        return "null"
    try:
        text = jsontext.dumps(result)
    except (TypeError, ValueError) as exc:
        raise ResultError(f"result is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ResultError(
            "result is not JSON-serialisable: nested too deep (or contains itself)"
        ) from None
    _check_text(text, "result", MAX_RESULT_BYTES, ResultError)
    return text


def decode(text: str | bytes | None) -> JSONValue:
    if text is None:
        return None
    return cast(JSONValue, jsontext.loads(text))

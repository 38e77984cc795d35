"""JSON text in and out through the json module's C accelerators, called once per value.

`JSONEncoder.encode` builds a new C encoder on every call and `json.loads` passes three
Python frames before the C scanner; for a queue that encodes a payload per enqueue and
decodes one per claim, the wrappers cost more than the work (a small payload: encode
4.0 → 1.0 µs, decode 2.0 → 0.9 µs). The text is exactly what the json module produces
and accepts; where its accelerators are missing, the module itself is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

# Compact, UTF-8 rather than \u escapes, and strict: NaN/Infinity are not JSON (PostgreSQL's
# jsonb refuses them too), so encoding one raises ValueError.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()
# Not in the json module's typed surface, but there since Python 3.1 (checked in tests).
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(_DECODER, "scan_once")  # noqa: B009


def _c_encoder() -> Callable[[object, int], Any] | None:
    make = getattr(_encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        # markers=None: no circular-reference bookkeeping, which would leave ids behind in a
        # shared dict after an error. A value that contains itself ends in RecursionError.
        encode: Callable[[object, int], Any] = make(
            None,
            _ENCODER.default,
            _encoder.encode_basestring,
            None,
            _ENCODER.key_separator,
            _ENCODER.item_separator,
            False,
            False,
            False,
        )
    except TypeError:  # another signature in another Python: use the module as it is
        return None
    return encode


_encode_chunks = _c_encoder()


def dumps(value: object) -> str:
    """`value` as compact JSON text; TypeError for what JSON cannot hold, ValueError for
    NaN/Infinity, RecursionError for nesting deeper than Python's stack (or a cycle)."""
    if _encode_chunks is None:
        return _ENCODER.encode(value)
    return "".join(_encode_chunks(value, 0))


def loads(text: str | bytes | bytearray | memoryview) -> object:
    """The value of JSON text; ValueError (json.JSONDecodeError) when it is not JSON."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # not a value at offset 0: json raises the precise error
    if end != len(text):
        return json.loads(text)  # whitespace or trailing data: json decides
    return value

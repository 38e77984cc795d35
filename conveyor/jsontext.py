"""JSON text in and out, exactly as the json module writes and reads it, without its
per-call overhead: a queue encodes a payload per enqueue and decodes one per claim.

Encoding calls the json module's C encoder directly, made once (its one undocumented door,
`json.encoder.c_make_encoder`; where it is missing, the module's own encoder is used).
Decoding uses the module's public `JSONDecoder.raw_decode`. Why not orjson or msgspec: they
write NaN/Infinity as null and encode types JSON lacks (datetimes, UUIDs, enums, dataclasses;
msgspec also sets and bytes), which payloads must refuse, orjson refuses integers beyond 64
bits and reads them back as floats, and a 10,000-job `enqueue_many` was no faster with either
(measured: docs/performance.md, "JSON codecs").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

# Compact, UTF-8 rather than \u escapes, and strict: NaN/Infinity are not JSON (PostgreSQL's
# jsonb refuses them too), so encoding one raises ValueError.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_raw_decode = json.JSONDecoder().raw_decode


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
        value, end = _raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)  # leading whitespace, or not JSON: json decides
    if end != len(text):
        return json.loads(text)  # trailing whitespace or data: json decides
    return value

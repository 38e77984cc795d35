"""conveyor.jsontext reads and writes exactly what the json module does, faster."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import jsontext
from conveyor.errors import InvalidJob
from conveyor.payloads import decode, encode_payload

REFERENCE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=20,
)


def test_the_c_accelerators_are_in_use():
    # Without them the module falls back to json's own (slower) calls; on CPython they exist.
    assert jsontext._encode_chunks is not None


@settings(max_examples=300)
@given(values)
def test_dumps_writes_what_json_writes_and_loads_reads_it_back(value):
    text = jsontext.dumps(value)
    assert text == REFERENCE.encode(value)
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.loads(text.encode("utf-8")) == json.loads(text)


@pytest.mark.parametrize("value", [math.nan, {"a": math.inf}, [-math.inf]])
def test_non_finite_floats_are_refused(value):
    with pytest.raises(ValueError):
        jsontext.dumps(value)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


# orjson and msgspec would write most of these (as strings, lists, objects): a payload that
# is not JSON is refused instead of reaching the task as something else.
NOT_JSON = [
    object(),
    {(1, 2): 3},
    {1, 2},
    b"bytes",
    datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
    uuid.UUID(int=1),
    decimal.Decimal("1.5"),
    Colour.RED,
    Point(1),
]


# ids without addresses: the same in every process (pytest-xdist compares collections)
@pytest.mark.parametrize("value", NOT_JSON, ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v)))
def test_what_json_cannot_hold_is_refused(value):
    with pytest.raises(TypeError):
        jsontext.dumps(value)
    with pytest.raises(InvalidJob, match="^payload is not JSON-serialisable: "):
        encode_payload({"value": value})


def test_a_value_that_contains_itself_is_refused_as_a_payload():
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        jsontext.dumps(looped)
    with pytest.raises(InvalidJob, match="contains itself"):
        encode_payload({"a": looped})
    # the failure left nothing behind: the same value, unlooped, encodes
    looped.clear()
    assert encode_payload({"a": looped}) == '{"a":[]}'


@pytest.mark.parametrize(
    ("text", "value"), [(" 1", 1), ("[1] ", [1]), ('\n{"a": 1}\t', {"a": 1}), ("null", None)]
)
def test_loads_accepts_surrounding_whitespace_like_json(text, value):
    assert jsontext.loads(text) == value
    assert decode(text) == value


@pytest.mark.parametrize("text", ["", "{", "[1] x", "1 2", "nul", "'a'"])
def test_loads_refuses_what_json_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsontext.loads(text)

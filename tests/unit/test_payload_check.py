"""PayloadCheck: a payload is refused at enqueue exactly when the worker's call
(SPEC §1's payload → arguments rule) could not bind to the task's signature."""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any

import pytest

from conveyor.errors import InvalidJob
from conveyor.tasks import PayloadCheck, call_arguments


def no_args() -> None: ...
def one(text): ...
def one_default(text="x"): ...
def two(order_id, amount): ...
def two_default(order_id, amount=0): ...
def keyword_only(a, *, b, c=1): ...
def var_args(*args): ...
def var_kwargs(**kwargs): ...
def both_var(*args, **kwargs): ...
def required_and_kwargs(a, **kwargs): ...
def positional_only(a, /, b=1): ...
def positional_only_default(a=1, /, b=2): ...
def positional_only_kwargs(a, /, **kwargs): ...
async def async_two(order_id, amount=None): ...


class Callable:
    def __call__(self, seq, seconds=1.0): ...


FUNCTIONS = [
    no_args,
    one,
    one_default,
    two,
    two_default,
    keyword_only,
    var_args,
    var_kwargs,
    both_var,
    required_and_kwargs,
    positional_only,
    positional_only_default,
    positional_only_kwargs,
    async_two,
    Callable(),
    functools.partial(two, "fixed"),
]
PAYLOADS: list[Any] = [
    None,
    "hello",
    0,
    [1, 2],
    {},
    {"text": "a"},
    {"txt": "a"},
    {"order_id": "A"},
    {"order_id": "A", "amount": 5},
    {"order_id": "A", "amount": 5, "extra": 1},
    {"amount": 5},
    {"a": 1},
    {"a": 1, "b": 2},
    {"b": 2},
    {"a": 1, "b": 2, "c": 3, "d": 4},
    {"seq": 1},
    {"seq": 1, "seconds": 2},
    {"args": 1},
    {"kwargs": 1},
]


def binds(func: Any, payload: Any) -> bool:
    """The worker's view: the payload as decoded JSON, turned into arguments as the executor
    does, bound to the signature."""
    args, kwargs = call_arguments(json.loads(json.dumps(payload)))
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("func", FUNCTIONS, ids=lambda f: getattr(f, "__name__", type(f).__name__))
def test_refused_exactly_when_the_call_would_not_bind(func):
    check = PayloadCheck("t", func)
    for payload in PAYLOADS:
        try:
            check(payload, json.dumps(payload))
        except InvalidJob:
            accepted = False
        else:
            accepted = True
        assert accepted == binds(func, payload), (payload, accepted)


@pytest.mark.parametrize(
    ("func", "payload", "fragments"),
    [
        (one, None, ["missing required argument 'text'", "a null payload passes no arguments"]),
        (one, {"txt": "a"}, ["unexpected argument 'txt'", "missing required argument 'text'"]),
        (two, "A", ["missing required argument 'amount'", "one positional argument"]),
        (two, None, ["missing required arguments 'order_id', 'amount'"]),
        (no_args, 5, ["takes no positional argument"]),
        (no_args, {"a": 1}, ["unexpected argument 'a'", "keyword arguments"]),
        (keyword_only, {"a": 1}, ["missing required argument 'b'"]),
        (positional_only, {"a": 1}, ["positional-only argument 'a' cannot be given by name"]),
        (
            no_args,
            {str(n): n for n in range(8)},
            ["unexpected arguments '0', '1', '2', '3', '4' and 3 more"],
        ),
    ],
)
def test_the_message_names_the_task_and_the_argument_in_one_line(func, payload, fragments):
    with pytest.raises(InvalidJob) as refused:
        PayloadCheck("my-task", func)(payload, json.dumps(payload))
    message = str(refused.value)
    assert message.startswith("payload does not fit task 'my-task': ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_long_or_control_character_names_stay_short_and_on_one_line():
    payload = {"x" * 1000: 1, "a\nb": 2}
    with pytest.raises(InvalidJob) as refused:
        PayloadCheck("t", no_args)(payload, json.dumps(payload))
    message = str(refused.value)
    assert "\n" not in message and len(message) < 300
    assert "'a\\nb'" in message


def test_a_callable_without_a_readable_signature_accepts_anything():
    check = PayloadCheck("t", max)  # inspect.signature(max) raises ValueError
    for payload in PAYLOADS:
        check(payload, json.dumps(payload))


def test_keys_are_checked_as_the_worker_sees_them_after_json():
    def takes_true(true): ...

    # {True: 1} is stored as {"true": 1}: the worker calls takes_true(true=1)
    PayloadCheck("t", takes_true)({True: 1}, json.dumps({True: 1}))
    with pytest.raises(InvalidJob):
        PayloadCheck("t", takes_true)({1: 1}, json.dumps({1: 1}))

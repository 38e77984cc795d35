"""SPEC §2: enqueueing checks the payload against the task's signature when the enqueuing
process knows the task; a missing or unexpected argument is refused on every path
(app.enqueue, Task.enqueue, enqueue_many, the async variants, the CLI) and nothing is
stored. HTTP: tests/api/test_signature.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidJob
from conveyor.stores import open_store
from tests.cli.test_cli import assert_one_line_error
from tests.cli.test_cli import run as cli


@pytest.fixture
def app(store_url: str) -> Iterator[Conveyor]:
    app = Conveyor(store_url)

    @app.task
    def reverse(text: str) -> str:
        return text[::-1]

    @app.task(name="payment")
    async def charge(order_id: str, amount: int = 0) -> None: ...

    @app.task
    def ping() -> str:
        return "pong"

    @app.task
    def anything(*args: object, **kwargs: object) -> None: ...

    @app.task
    def options(name: str, **more: object) -> None: ...

    yield app
    app.close()


def stored(url: str) -> int:
    store = open_store(url)
    try:
        return sum(sum(by_status.values()) for by_status in store.stats().values())
    finally:
        store.close()


REFUSED = [
    ("reverse", None, "missing required argument 'text'"),
    ("reverse", {"txt": "a"}, "unexpected argument 'txt'"),
    ("reverse", {"text": "a", "extra": 1}, "unexpected argument 'extra'"),
    ("payment", {"amount": 5}, "missing required argument 'order_id'"),
    ("payment", {"order_id": "A", "amuont": 5}, "unexpected argument 'amuont'"),
    ("ping", "now", "takes no positional argument"),
    ("ping", {"at": 1}, "unexpected argument 'at'"),
    ("options", {"colour": "red"}, "missing required argument 'name'"),
]
ACCEPTED = [
    ("reverse", "hello"),
    ("reverse", {"text": "hello"}),
    ("payment", {"order_id": "A"}),
    ("payment", "A"),  # one positional argument: order_id
    ("ping", None),
    ("ping", {}),
    ("anything", None),
    ("anything", [1, 2]),
    ("anything", {"any": "thing", "at": "all"}),
    ("options", {"name": "n", "colour": "red"}),
]


@pytest.mark.parametrize(("kind", "payload", "fragment"), REFUSED)
def test_app_enqueue_refuses_a_payload_that_does_not_fit(app, store_url, kind, payload, fragment):
    with pytest.raises(InvalidJob) as refused:
        app.enqueue(kind, payload)
    message = str(refused.value)
    assert message.startswith(f"payload does not fit task {kind!r}: ")
    assert fragment in message and "\n" not in message
    with pytest.raises(InvalidJob, match="does not fit"):
        asyncio.run(app.enqueue_async(kind, payload))
    assert stored(store_url) == 0


def test_payloads_that_fit_are_accepted_on_every_path(app, store_url):
    for kind, payload in ACCEPTED:
        assert app.enqueue(kind, payload).payload == payload
    items = [{"type": kind, "payload": payload} for kind, payload in ACCEPTED]
    assert [j.payload for j in app.enqueue_many(items)] == [p for _, p in ACCEPTED]
    assert [j.payload for j in asyncio.run(app.enqueue_many_async(items))] == [
        p for _, p in ACCEPTED
    ]
    assert stored(store_url) == 3 * len(ACCEPTED)


def test_task_enqueue_checks_too(app, store_url):
    reverse, charge = app.tasks["reverse"], app.tasks["payment"]
    assert reverse.enqueue("hello").payload == "hello"
    assert reverse.enqueue(text="hi").payload == {"text": "hi"}
    assert charge.enqueue(order_id="A", amount=3).payload == {"order_id": "A", "amount": 3}
    for call, fragment in [
        (lambda: reverse.enqueue(), "missing required argument 'text'"),
        (lambda: reverse.enqueue(txt="hi"), "unexpected argument 'txt'"),
        (lambda: charge.enqueue(amount=3), "missing required argument 'order_id'"),
    ]:
        with pytest.raises(InvalidJob, match=fragment):
            call()
    assert stored(store_url) == 3


def test_one_bad_item_refuses_the_whole_batch(app, store_url):
    good = {"type": "reverse", "payload": "a"}
    # the bad item comes after good ones of its type: the batch's shortcut for repeated
    # {type, payload} items checks it too
    for bad, fragment in [
        ({"type": "reverse", "payload": {"txt": "a"}}, "jobs[2]: payload does not fit task"),
        ({"type": "reverse", "payload": None}, "jobs[2]: payload does not fit task 'reverse'"),
        ({"type": "payment", "payload": {}, "priority": 1}, "missing required argument"),
    ]:
        with pytest.raises(InvalidJob) as refused:
            app.enqueue_many([good, good, bad, good])
        assert fragment in str(refused.value)
        with pytest.raises(InvalidJob):
            asyncio.run(app.enqueue_many_async([good, good, bad, good]))
    assert stored(store_url) == 0


def test_a_pure_producer_accepts_any_payload_for_any_type(store_url):
    with Conveyor(store_url) as producer:
        assert producer.enqueue("reverse", {"txt": "a"}).payload == {"txt": "a"}
        assert producer.enqueue("ping", "now").payload == "now"
        assert asyncio.run(producer.enqueue_async("reverse")).payload is None
    assert stored(store_url) == 3


def test_cli_enqueue_refuses_in_one_line_and_stores_nothing(store_url):
    """The demo app's `reverse(text)`, `payment(order_id, amount=None)`."""
    for args, fragment in [
        (["reverse"], "missing required argument 'text'"),
        (["reverse", "--payload", '{"txt": "a"}'], "unexpected argument 'txt'"),
        (["payment", "--payload", '{"amount": 5}'], "missing required argument 'order_id'"),
    ]:
        proc = cli("enqueue", *args, url=store_url)
        assert_one_line_error(proc, fragment)
        assert f"task '{args[0]}'" in proc.stderr and proc.stdout == ""
    assert stored(store_url) == 0
    made = cli("enqueue", "reverse", "--payload", '{"text": "abc"}', url=store_url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["payload"] == {"text": "abc"}
    assert stored(store_url) == 1

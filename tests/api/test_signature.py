"""SPEC §2/§4: a payload that does not fit its task's signature is a 422 naming the task
and the argument, on POST /jobs and POST /jobs/batch, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conveyor import Conveyor
from tests.api.servers import ThreadedApi


@pytest.fixture
def strict(store_url: str, settings) -> Iterator[httpx.Client]:
    app = Conveyor(store_url)

    @app.task
    def reverse(text: str) -> str:
        return text[::-1]

    @app.task
    def payment(order_id: str, amount: int = 0) -> None: ...

    with ThreadedApi(app, settings) as server, server.client() as client:
        yield client
    app.close()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "reverse"}, "missing required argument 'text'"),
        ({"type": "reverse", "payload": {"txt": "a"}}, "unexpected argument 'txt'"),
        ({"type": "payment", "payload": {"amount": 1}}, "missing required argument 'order_id'"),
    ],
)
def test_post_jobs_is_422_with_the_message(strict, count_jobs, body, fragment):
    response = strict.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "invalid_job"
    assert error["msg"].startswith(f"payload does not fit task {body['type']!r}: ")
    assert fragment in error["msg"]
    assert count_jobs() == 0


def test_post_batch_refuses_all_for_one_bad_item(strict, count_jobs):
    good = {"type": "reverse", "payload": "a"}
    bad = {"type": "reverse", "payload": {"txt": "a"}}
    response = strict.post("/jobs/batch", json={"jobs": [good, good, bad, good]})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["msg"].startswith("jobs[2]: payload does not fit task 'reverse': ")
    assert count_jobs() == 0
    ok = strict.post("/jobs/batch", json={"jobs": [good, {"type": "payment", "payload": "A"}]})
    assert ok.status_code == 201, ok.text
    assert count_jobs() == 2

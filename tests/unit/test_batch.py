"""Conveyor.build_many: a batch is validated exactly as its items would be one by one."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.errors import InvalidJob, UnknownTask


@pytest.fixture
def app(tmp_path):
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task(name="mail", queue="emails", priority=5, max_attempts=2)
    def mail(to: str) -> None: ...

    @app.task(name="plain")
    def plain(n: int = 0) -> None: ...  # a default: the batch below also sends a null payload

    return app


def test_a_batch_builds_what_build_job_builds_for_each_item(app):
    items = [
        {"type": "mail", "payload": {"to": "a@example.com"}},
        {"type": "plain", "payload": {"n": 1}},
        {"type": "mail", "payload": {"to": "b@example.com"}},
        {"type": "mail", "payload": {"to": "c@example.com"}, "priority": 9},
        {"type": "plain", "payload": {"n": 2}},
        {"type": "plain", "payload": None},
        {"type": "mail", "payload": {"to": "d@example.com"}, "unique_key": "d"},
        {"type": "mail", "payload": {"to": "e@example.com"}},
    ]
    assert app.build_many(items) == [app.build_job(**item) for item in items]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"type": "mail", "payload": {"x": float("nan")}}, InvalidJob, "jobs[2]: payload"),
        ({"type": "nope", "payload": {}}, UnknownTask, "jobs[2]: unknown task type"),
        ({"type": ["mail"], "payload": {}}, InvalidJob, "jobs[2]: type must be a string"),
        ({"type": "mail", "payload": "a\x00"}, InvalidJob, "jobs[2]: payload contains a NUL"),
    ],
)
def test_a_bad_item_after_good_ones_of_its_type_is_refused_by_position(app, bad, error, message):
    good = {"type": "mail", "payload": {"to": "a@example.com"}}
    with pytest.raises(error) as refused:
        app.build_many([good, good, bad, good])
    assert str(refused.value).startswith(message)

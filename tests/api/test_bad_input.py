"""Bad input never yields a 5xx and never writes anything (SPEC §4): 422, 413, 401."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from tests.api.servers import ThreadedApi, api_settings, make_app

BAD_BODIES = {
    "malformed-json": b'{"type": "reverse",',
    "not-json": b"type=reverse",
    "array": b'[{"type": "reverse"}]',
    "string": b'"reverse"',
    "null": b"null",
    "empty-object": b"{}",
    "type-int": b'{"type": 5}',
    "type-empty": b'{"type": ""}',
    "type-too-long": b'{"type": "' + b"t" * 201 + b'"}',
    "type-nul": b'{"type": "rev\\u0000erse"}',
    "type-lone-surrogate": b'{"type": "\\ud800"}',
    "priority-string": b'{"type": "reverse", "priority": "5"}',
    "priority-float": b'{"type": "reverse", "priority": 1.5}',
    "priority-bool": b'{"type": "reverse", "priority": true}',
    "priority-too-high": b'{"type": "reverse", "priority": 32768}',
    "priority-too-low": b'{"type": "reverse", "priority": -32769}',
    "priority-huge": b'{"type": "reverse", "priority": 1' + b"0" * 40 + b"}",
    "max-attempts-zero": b'{"type": "reverse", "max_attempts": 0}',
    "max-attempts-1001": b'{"type": "reverse", "max_attempts": 1001}',
    "delay-negative": b'{"type": "reverse", "delay": -1}',
    "delay-too-long": b'{"type": "reverse", "delay": 31536001}',
    "delay-string": b'{"type": "reverse", "delay": "10"}',
    "delay-nan": b'{"type": "reverse", "delay": NaN}',
    "delay-infinity": b'{"type": "reverse", "delay": Infinity}',
    "delay-and-run-at": b'{"type": "reverse", "delay": 5, "run_at": "2031-01-01T00:00:00Z"}',
    "run-at-naive": b'{"type": "reverse", "run_at": "2031-01-01T00:00:00"}',
    "run-at-garbage": b'{"type": "reverse", "run_at": "next tuesday"}',
    "run-at-number": b'{"type": "reverse", "run_at": 1900000000}',
    "run-at-overflow": b'{"type": "reverse", "run_at": "0001-01-01T00:00:00+05:00"}',
    "queue-empty": b'{"type": "reverse", "queue": ""}',
    "queue-null-byte": b'{"type": "reverse", "queue": "a\\u0000"}',
    "unique-key-empty": b'{"type": "reverse", "unique_key": ""}',
    "unique-key-too-long": b'{"type": "reverse", "unique_key": "' + b"k" * 256 + b'"}',
    "unknown-field": b'{"type": "reverse", "colour": "blue"}',
    "payload-nan": b'{"type": "reverse", "payload": [NaN]}',
    "payload-nul": b'{"type": "reverse", "payload": "a\\u0000b"}',
    "payload-lone-surrogate": b'{"type": "reverse", "payload": "\\udc00"}',
    "unknown-task-type": b'{"type": "no-such-task"}',
    "batch-shape-on-single": b'{"jobs": [{"type": "reverse"}]}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_job_is_422_and_stores_nothing(client, count_jobs, body):
    response = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail and all(d["msg"] and d["loc"] and d["type"] for d in detail)
    batch = b'{"jobs": [{"type": "print"}, ' + body + b"]}"
    response = client.post(
        "/jobs/batch", content=batch, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert count_jobs() == 0


def test_messages_name_the_problem(client):
    def message(body: dict[str, object]) -> str:
        response = client.post("/jobs", json=body)
        assert response.status_code == 422
        return " | ".join(d["msg"] for d in response.json()["detail"])

    assert "unknown task type 'nope'" in message({"type": "nope"})
    assert "greater than or equal to 0" in message({"type": "reverse", "delay": -5})
    assert "Extra inputs" in message({"type": "reverse", "colour": 1})
    assert "timezone" in message({"type": "reverse", "run_at": "2031-01-01T00:00:00"})
    assert "either delay or run_at" in message(
        {"type": "reverse", "delay": 1, "run_at": "2031-01-01T00:00:00Z"}
    )
    assert "ISO 8601" in message({"type": "reverse", "run_at": "soon"})
    batch = client.post("/jobs/batch", json={"jobs": [{"type": "print"}, {"type": "nope"}]})
    assert batch.status_code == 422
    assert "jobs[1]" in batch.json()["detail"][0]["msg"]
    malformed = client.post("/jobs", content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.json()["detail"][0]["msg"].startswith("malformed JSON")


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "\xff\xfe"}',
        b"[" * 100_000,
        b'{"type": "reverse", "priority": 1' + b"0" * 5000 + b"}",
    ],
    ids=["invalid-utf8", "nested-too-deep", "integer-too-long-to-parse"],
)
def test_unparseable_bodies_are_422(client, count_jobs, body):
    response = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("malformed JSON")
    assert count_jobs() == 0


def test_deep_payload_is_stored_or_refused_never_5xx(client):
    depth = 500
    response = client.post(
        "/jobs",
        content=b'{"type": "reverse", "payload": ' + b"[" * depth + b"]" * depth + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (201, 422)


def test_integral_floats_are_integers(client):
    response = client.post("/jobs", json={"type": "reverse", "priority": 5.0, "max_attempts": 2.0})
    assert response.status_code == 201
    assert (response.json()["priority"], response.json()["max_attempts"]) == (5, 2)


def test_body_without_content_type_is_415(client, count_jobs):
    # a body must say it is JSON (a form or a bare fetch() body cannot): 415, not parsed
    response = client.post("/jobs", content=b'{"type": "reverse"}', headers={"Content-Type": ""})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert count_jobs() == 0


def test_any_type_is_accepted_when_the_app_has_no_tasks(store_url, settings):
    app = make_app(store_url, with_tasks=False)
    try:
        with ThreadedApi(app, settings) as live, live.client() as client:
            response = client.post("/jobs", json={"type": "anything.at_all"})
            assert response.status_code == 201
            assert response.json()["type"] == "anything.at_all"
    finally:
        app.close()


# -- 413 -----------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413(client, count_jobs):
    big = b'{"type": "reverse", "payload": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/jobs", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200
    assert count_jobs() == 0


def test_streamed_body_over_the_limit_is_413_without_content_length(store_url, count_jobs):
    app = make_app(store_url)
    chunk = b" " * 1024

    def body() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        yield b'{"type": "reverse", "payload": "'
        for _ in range(10):
            yield chunk
        yield b'"}'

    try:
        with ThreadedApi(app, api_settings(max_body_bytes=4096)) as live:
            with live.client() as client:
                response = client.post(
                    "/jobs", content=body(), headers={"Content-Type": "application/json"}
                )
                assert "content-length" not in response.request.headers
                assert response.status_code == 413
                small = client.post("/jobs", json={"type": "reverse", "payload": "x" * 3000})
                assert small.status_code == 201
    finally:
        app.close()
    assert count_jobs() == 1


def test_body_just_under_the_limit_is_accepted(client):
    text = "y" * (1024 * 1024 - 100)
    response = client.post("/jobs", json={"type": "reverse", "payload": text})
    assert response.status_code == 201
    assert len(response.json()["payload"]) == len(text)


# -- 401 -----------------------------------------------------------------------------------------
TOKEN = "s3cret-tøken"  # noqa: S105


@pytest.fixture
def secured(conveyor):
    with ThreadedApi(conveyor, api_settings(api_token=TOKEN)) as live:
        yield live


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("GET", "/jobs/1"),
        ("POST", "/jobs/1/cancel"),
        ("POST", "/jobs/1/retry"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/no-such-page"),
    ],
)
def test_token_is_required_everywhere_but_the_probes(secured, count_jobs, method, path):
    wrong: list[dict[str, bytes]] = [
        {},
        {"Authorization": b"Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}".encode()},
        {"Authorization": b"Bearer"},
        {"Authorization": f"Bearer {TOKEN}x".encode()},
        {"Authorization": f"Bearer {TOKEN[:-1]}".encode()},
    ]
    with secured.client() as client:
        for headers in wrong:
            # a bad body too: the token is checked before the body is read
            response = client.request(
                method,
                path,
                content=b"{bad",
                headers={**headers, "Content-Type": b"application/json"},
            )
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert count_jobs() == 0


def _basic(user: str, password: str) -> dict[str, bytes]:
    return {"Authorization": b"Basic " + base64.b64encode(f"{user}:{password}".encode())}


def test_a_browser_is_asked_for_the_token_as_a_basic_password(secured):
    with secured.client() as client:
        html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        page = client.get("/docs", headers=html)
        assert page.status_code == 401
        assert page.headers["www-authenticate"] == 'Basic realm="Conveyor", charset="UTF-8"'
        # the dashboard asks with a form of its own instead (tests/dashboard)
        dashboard = client.get("/", headers=html)
        assert dashboard.status_code == 401
        assert dashboard.headers["www-authenticate"] == "Bearer"
        for path in ("/", "/docs", "/jobs", "/metrics"):
            assert client.get(path, headers=_basic("anyone", TOKEN)).status_code == 200, path
        assert client.get("/", headers=_basic("", TOKEN)).status_code == 200
        refused = [
            _basic("anyone", "wrong"),
            _basic(TOKEN, ""),  # the token is the password, not the user name
            _basic("anyone", TOKEN + "x"),
            {"Authorization": b"Basic !!not-base64!!"},
            {"Authorization": b"Basic " + base64.b64encode(TOKEN.encode())},  # no colon
            {"Authorization": b"Basic " + base64.b64encode(b"u:\xff\xfe")},
        ]
        for headers in refused:
            assert client.get("/jobs", headers=headers).status_code == 401, headers


def test_right_token_is_accepted(secured, caplog):
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {TOKEN}".encode()}
    with secured.client(headers=auth) as client:
        created = client.post("/jobs", json={"type": "reverse", "payload": "x"})
        assert created.status_code == 201
        assert client.get(f"/jobs/{created.json()['id']}").status_code == 200
        assert client.get("/jobs").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
        lower = client.post(
            "/jobs", json={"type": "reverse"}, headers={"authorization": f"bearer {TOKEN}".encode()}
        )
        assert lower.status_code == 201
    assert TOKEN not in caplog.text


def test_no_token_configured_means_no_auth(client):
    assert client.get("/jobs").status_code == 200
    assert client.get("/jobs", headers={"Authorization": "Bearer anything"}).status_code == 200

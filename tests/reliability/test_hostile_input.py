"""Hostile input through the Python API and the CLI, on both stores: SQL metacharacters,
strings at and over the limits, NUL, invalid UTF-8 and lone surrogates in every field.

Each value is either stored faithfully (read back equal, found by an exact filter) or refused
with a clear one-line error; it is never executed as SQL (the jobs table is intact after), and
the CLI never prints a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from conveyor import Conveyor
from conveyor.errors import ConveyorError, InvalidJob
from tests.api.servers import ServeProcess
from tests.support.procs import CONVEYOR, ROOT, Workers
from tests.support.wait import wait_until

MIB = 1024 * 1024
PRODUCER_APP = "tests.reliability.hostile_app:app"  # no tasks: any type is accepted

HOSTILE = [
    "'; DROP TABLE jobs; --",
    '" OR 1=1 --',
    "' OR '1'='1",
    "Robert'); DELETE FROM jobs WHERE ('1'='1",
    "%",
    "_",
    "%_%",
    "\\",
    "\\'",
    "$1",
    "?",
    ":id",
    "%(id)s",
    "{}",
    "*/ SELECT 1 /*",
    "NULL",
    "null",
    "日本語 ✓ émoji 🚀",
    "\u202eRTL override",
    "zero\u200bwidth",
    "tab\tnewline\ncarriage\rreturn",
    "  leading and trailing  ",
    "\x01\x1f\x7f control",
    "\\u0000",  # the text of a NUL's JSON escape (backslash, u0000), not a NUL
    "\\\\u0000\\",
]
NAME_MAX, UNIQUE_KEY_MAX = 200, 255


@pytest.fixture
def app(store_url):
    conveyor = Conveyor(store_url)  # a pure producer: accepts any type
    yield conveyor
    conveyor.close()


def total(app: Conveyor) -> int:
    return sum(sum(q.values()) for q in app.store.stats().values())


# -- Python API ----------------------------------------------------------------------------
def test_a_batch_of_hostile_values_is_stored_faithfully(app):
    # enqueue_many sends the whole batch as one JSON document the server parses: every
    # field of every row must come back exactly as given.
    items = [
        {
            "type": value,
            "payload": {value: value, "list": [value, {"nested": value}]},
            "queue": value,
            "unique_key": value,
        }
        for value in HOSTILE
    ]
    jobs = app.enqueue_many(items)
    assert len({job.id for job in jobs}) == len(HOSTILE)
    for item, job in zip(items, jobs, strict=True):
        back = app.get_job(job.id)
        assert back is not None and back == job
        assert (back.type, back.payload, back.queue, back.unique_key) == (
            item["type"],
            item["payload"],
            item["queue"],
            item["unique_key"],
        )


def test_sql_metacharacters_and_odd_unicode_are_stored_faithfully_in_every_field(app):
    sentinel = app.enqueue("sentinel", {"keep": True})
    for value in HOSTILE:
        payload = {value: value, "list": [value, {"nested": value}]}
        job = app.enqueue(value, payload, queue=value, unique_key=value)
        back = app.get_job(job.id)
        assert back is not None
        assert (back.type, back.queue, back.unique_key, back.payload) == (
            value,
            value,
            value,
            payload,
        ), value
        again = app.enqueue(value, "other", queue=value, unique_key=value)
        assert again.id == job.id, f"unique_key {value!r} matched exactly"
        by_type = app.list_jobs(type=value)
        by_queue = app.list_jobs(queue=value)
        assert [j.id for j in by_type] == [job.id], f"type filter {value!r} is exact"
        assert [j.id for j in by_queue] == [job.id], f"queue filter {value!r} is exact"
    assert total(app) == len(HOSTILE) + 1, "nothing dropped, nothing extra"
    assert app.get_job(sentinel.id) == sentinel


def test_strings_at_the_limits_are_stored_and_one_more_character_is_refused(app):
    for char in ("x", "é", "🚀"):  # 1, 2 and 4 bytes in UTF-8: limits count characters
        name, key = char * NAME_MAX, char * UNIQUE_KEY_MAX
        job = app.enqueue(name, None, queue=name, unique_key=key)
        back = app.get_job(job.id)
        assert back is not None and (back.type, back.queue, back.unique_key) == (name, name, key)
        before = total(app)
        for field, kwargs in [
            ("type", {"type": name + char}),
            ("queue", {"type": "t", "queue": name + char}),
            ("unique_key", {"type": "t", "unique_key": key + char}),
        ]:
            with pytest.raises(InvalidJob) as refused:
                app.enqueue(**kwargs)
            limit = UNIQUE_KEY_MAX if field == "unique_key" else NAME_MAX
            assert str(refused.value) == f"{field} must be 1 to {limit} characters, got {limit + 1}"
        assert total(app) == before
    with pytest.raises(InvalidJob, match="type must be 1 to 200 characters, got 0"):
        app.enqueue("")


def test_payload_at_one_mib_is_stored_and_one_byte_more_is_refused(app):
    at_limit = "é" * ((MIB - 2) // 2)  # JSON text: two quotes + 2-byte characters
    assert len(json.dumps(at_limit, ensure_ascii=False).encode()) == MIB
    job = app.enqueue("big", at_limit)
    back = app.get_job(job.id)
    assert back is not None and back.payload == at_limit
    with pytest.raises(InvalidJob) as refused:
        app.enqueue("big", at_limit + "x")
    assert str(refused.value) == f"payload is {MIB + 1} bytes, more than the limit of {MIB}"
    with pytest.raises(InvalidJob, match="jobs\\[1\\]: payload is"):
        app.enqueue_many([{"type": "small"}, {"type": "big", "payload": at_limit + "x"}])
    assert total(app) == 1, "a refused batch stores none of its jobs"


NUL_AND_SURROGATES = ["a\x00b", "\x00", "\ud800", "x\udcff", "\udfff\ud800"]


@pytest.mark.parametrize("bad", NUL_AND_SURROGATES, ids=ascii)
def test_nul_and_lone_surrogates_are_refused_in_every_field(app, bad):
    for kwargs in [
        {"type": bad},
        {"type": "t", "queue": bad},
        {"type": "t", "unique_key": bad},
        {"type": "t", "payload": bad},
        {"type": "t", "payload": {bad: 1}},
        {"type": "t", "payload": {"k": [1, {"deep": bad}]}},
    ]:
        with pytest.raises(InvalidJob) as refused:
            app.enqueue(**kwargs)
        message = str(refused.value)
        assert "\n" not in message and ("NUL" in message or "unicode" in message), message
        with pytest.raises(InvalidJob):
            app.enqueue_many([{"type": "fine"}, kwargs])
    assert total(app) == 0


@pytest.mark.parametrize(
    "query",
    [
        {"type": "\udcff"},
        {"queue": "\ud800"},
        {"type": "a\x00b"},
        {"before_id": 2**70},
    ],
    ids=["surrogate-type", "surrogate-queue", "nul-type", "huge-before-id"],
)
def test_hostile_filter_values_find_nothing_or_are_refused_as_invalid(
    app, query, store_url, request
):
    app.enqueue("t")
    try:
        found = app.list_jobs(**query)
    except ConveyorError as exc:
        assert isinstance(exc, InvalidJob), repr(exc)
    else:
        assert found == [] or "before_id" in query


def test_deeply_nested_payloads_are_refused_or_stored_and_claimable(app):
    for depth in (100, 500, 900, 950, 980, 990, 1000, 5000):
        payload: list[object] = []
        for _ in range(depth - 1):  # built iteratively: json.loads itself recurses
            payload = [payload]
        before = total(app)
        try:
            job = app.enqueue("deep", payload)
        except InvalidJob:
            assert total(app) == before, f"depth {depth}: refused but stored"
            continue
        claimed = app.store.claim(worker="w", queues=None, limit=10, lease=timedelta(seconds=30))
        assert [j.id for j in claimed] == [job.id] and claimed[0].payload == payload, depth


# -- CLI -------------------------------------------------------------------------------------
def cli(url: str, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`conveyor ARGS --database-url URL`; bytes arguments reach argv as they are (invalid
    UTF-8 included), str arguments through os.fsencode (surrogateescape)."""
    argv = [os.fsencode(CONVEYOR), *(a if isinstance(a, bytes) else os.fsencode(a) for a in args)]
    argv += [b"--database-url", url.encode()]
    env = {**os.environ, "CONVEYOR_APP": PRODUCER_APP}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)


def assert_refused(result: subprocess.CompletedProcess[bytes], why: str) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, (why, result.returncode, err)
    assert result.stdout == b"", why
    assert "Traceback" not in err, (why, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (why, err)


def parallel(
    calls: Sequence[Sequence[str | bytes]], url: str
) -> list[subprocess.CompletedProcess[bytes]]:
    """Run independent CLI calls four at a time; results in input order."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: cli(url, *args), calls))


@pytest.mark.process
def test_cli_stores_hostile_values_faithfully_and_never_runs_them_as_sql(store_url):
    values = HOSTILE[:10] + ["日本語 ✓ émoji 🚀", "tab\tnewline\nreturn", "\\u0000"]
    results = parallel(
        [
            ["enqueue", v, "--queue", v, "--unique-key", v, "--payload", json.dumps({v: [v]})]
            for v in values
        ],
        store_url,
    )
    printed = {}
    for value, result in zip(values, results, strict=True):
        assert result.returncode == 0, (value, result.stderr.decode(errors="replace"))
        job = json.loads(result.stdout)
        assert (job["type"], job["queue"], job["unique_key"], job["payload"]) == (
            value,
            value,
            value,
            {value: [value]},
        )
        printed[job["id"]] = job
    listed = cli(store_url, "jobs", "list", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    assert {j["id"]: j for j in json.loads(listed.stdout)["jobs"]} == printed
    for value in values[:4]:  # the SQL ones, as filters
        found = cli(store_url, "jobs", "list", "--json", "--type", value)
        assert found.returncode == 0, found.stderr
        assert [j["type"] for j in json.loads(found.stdout)["jobs"]] == [value]
    some_id = next(iter(printed))
    shown = cli(store_url, "jobs", "show", str(some_id))
    assert shown.returncode == 0 and json.loads(shown.stdout) == printed[some_id]
    stats = cli(store_url, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)["queues"]
    assert sum(sum(q.values()) for q in counts.values()) == len(values), "table intact"


@pytest.mark.process
def test_cli_refuses_bad_bytes_nul_surrogates_and_overlong_values_in_one_line(store_url):
    refusals: dict[str, list[str | bytes]] = {
        "invalid UTF-8 type": ["enqueue", b"\xff\xfe"],
        "invalid UTF-8 queue": ["enqueue", "t", "--queue", b"q\xff"],
        "CESU surrogate unique key": ["enqueue", "t", "--unique-key", b"k\xed\xa0\x80"],
        "invalid UTF-8 in payload": ["enqueue", "t", "--payload", b'"\xff"'],
        "escaped NUL in payload": ["enqueue", "t", "--payload", '{"a": "x\\u0000y"}'],
        "escaped NUL in a key": ["enqueue", "t", "--payload", '{"\\u0000": 1}'],
        "escaped lone surrogate": ["enqueue", "t", "--payload", '["\\ud800"]'],
        "NaN payload": ["enqueue", "t", "--payload", "NaN"],
        "not JSON": ["enqueue", "t", "--payload", "{'a': 1}"],
        "type too long": ["enqueue", "t" * (NAME_MAX + 1)],
        "queue too long": ["enqueue", "t", "--queue", "q" * (NAME_MAX + 1)],
        "unique key too long": ["enqueue", "t", "--unique-key", "k" * (UNIQUE_KEY_MAX + 1)],
        "empty type": ["enqueue", ""],
        "priority out of range": ["enqueue", "t", "--priority", "99999999999999999999"],
        "max_attempts out of range": ["enqueue", "t", "--max-attempts", "0"],
        "negative delay": ["enqueue", "t", "--delay", "-1"],
        "NaN delay": ["enqueue", "t", "--delay", "nan"],
        "absent job": ["jobs", "show", "424242"],
    }
    results = parallel(list(refusals.values()), store_url)
    for why, result in zip(refusals, results, strict=True):
        assert_refused(result, why)
    at_limits = cli(
        store_url,
        "enqueue",
        "🚀" * NAME_MAX,
        "--queue",
        "é" * NAME_MAX,
        "--unique-key",
        "k" * UNIQUE_KEY_MAX,
    )
    assert at_limits.returncode == 0, at_limits.stderr
    job = json.loads(at_limits.stdout)
    assert (job["type"], job["queue"], job["unique_key"]) == (
        "🚀" * NAME_MAX,
        "é" * NAME_MAX,
        "k" * UNIQUE_KEY_MAX,
    )
    stats = cli(store_url, "stats", "--json")
    assert json.loads(stats.stdout) == {"queues": {"é" * NAME_MAX: {"pending": 1}}}


@pytest.mark.process
def test_cli_deeply_nested_payload_fails_in_one_line(sqlite_url):
    depth = 50_000  # 100 kB: fits in one argv string (128 KiB)
    assert_refused(cli(sqlite_url, "enqueue", "t", "--payload", "[" * depth + "]" * depth), "deep")


@pytest.mark.process
def test_cli_list_filters_with_invalid_utf8_fail_in_one_line(store_url):
    for option in ("--type", "--queue"):
        result = cli(store_url, "jobs", "list", option, b"x\xff")
        if result.returncode != 0:
            assert_refused(result, option)
        else:
            assert b"no jobs" in result.stdout


@pytest.mark.process
def test_cli_job_ids_beyond_64_bits_are_absent_not_a_traceback(store_url, request):
    huge = "99999999999999999999"
    for args in (["jobs", "show", huge], ["jobs", "cancel", huge], ["jobs", "retry", huge]):
        assert_refused(cli(store_url, *args), " ".join(args))
    listed = cli(store_url, "jobs", "list", "--before-id", huge)
    assert b"Traceback" not in listed.stderr, listed.stderr


# -- a real worker's log ----------------------------------------------------------------------
@pytest.mark.process
def test_a_type_with_newlines_cannot_forge_a_line_in_a_workers_log(app, workers: Workers):
    forged = "x\n2026-01-01T00:00:00.000Z INFO [WORKER-1] finished job=1 status=done\r"
    bare = "y\n2026-01-01T00:00:00.000Z\rz"  # no space: was logged unquoted
    jobs = [
        app.enqueue(forged, {"m": "a\nb"}, queue="q\nq", max_attempts=1),
        app.enqueue(bare, max_attempts=1),
    ]
    worker = workers.start("--workers", "1", "--fetch-interval", "0.2")
    wait_until(
        lambda: all((j := app.get_job(job.id)) and j.status == "failed" for job in jobs),
        timeout=30,
        message="the jobs of types the worker does not know failed",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    log = workers.log(0)
    lines = log.split("\n")
    assert lines[-1] == "" and len(lines) > 3, log
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ ")
    assert all(stamp.match(line) for line in lines[:-1]), log
    assert "\r" not in log
    shown = '"x\\n2026-01-01T00:00:00.000Z INFO [WORKER-1] finished job=1 status=done\\r"'
    assert f" processing job={jobs[0].id} type={shown} " in log, log
    assert f' processing job={jobs[1].id} type="y\\n2026-01-01T00:00:00.000Z\\rz" ' in log, log


# -- HTTP, through a real `conveyor serve` ---------------------------------------------------
TOKEN = "tok-" + "Zq9!x7" * 4


@pytest.fixture
def served(store_url, tmp_path):
    server = ServeProcess(
        tmp_path,
        store_url,
        "--workers",
        "0",
        "--app",
        PRODUCER_APP,
        env={"API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)},
    )
    try:
        server.wait_serving()
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield server, client
    finally:
        server.close()


def test_http_stores_hostile_values_faithfully_or_answers_4xx_never_5xx(served):
    server, client = served
    created = {}
    for value in HOSTILE:
        body = {"type": value, "queue": value, "unique_key": value, "payload": {value: [value]}}
        response = client.post("/jobs", json=body)
        assert response.status_code == 201, (value, response.text)
        job = response.json()
        assert {k: job[k] for k in body} == body
        assert client.get(f"/jobs/{job['id']}").json() == job
        found = client.get("/jobs", params={"type": value}).json()["jobs"]
        assert [j["id"] for j in found] == [job["id"]], f"type filter {value!r} is exact"
        created[job["id"]] = job

    escaped = [
        '{"type": "a\\u0000b"}',
        '{"type": "t", "queue": "\\u0000"}',
        '{"type": "t", "unique_key": "k\\u0000"}',
        '{"type": "t", "payload": "\\u0000"}',
        '{"type": "t", "payload": {"\\u0000": 1}}',
        '{"type": "\\ud800"}',
        '{"type": "t", "queue": "q\\udfff"}',
        '{"type": "t", "unique_key": "\\udcff"}',
        '{"type": "t", "payload": ["\\ud800"]}',
        '{"type": "' + "t" * (NAME_MAX + 1) + '"}',
        '{"type": "t", "unique_key": "' + "k" * (UNIQUE_KEY_MAX + 1) + '"}',
        '{"type": "\'; DROP TABLE jobs; --", "priority": "1; DROP TABLE jobs"}',
        '{"type": "t", "payload": NaN}',
    ]
    raw = [b'{"type": "\xff"}', b'{"type": "t", "queue": "\xed\xa0\x80"}', b'{"type": "t\x00"}']
    for body_bytes in [b.encode() for b in escaped] + raw:
        response = client.post(
            "/jobs", content=body_bytes, headers={"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (body_bytes[:80], response.text)
        batch = b'{"jobs": [{"type": "fine"}, ' + body_bytes + b"]}"
        response = client.post(
            "/jobs/batch", content=batch, headers={"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (batch[:80], response.text)

    odd_queries = [
        "/jobs?type=%FF",
        "/jobs?type=%ED%A0%80",
        "/jobs?type=%00",
        "/jobs?queue=x%27%20OR%20%27x%27%3D%27x",
        "/jobs?type=%25x%25",
        "/jobs?before_id=99999999999999999999",
        "/jobs?limit=1%20OR%201%3D1",
        "/jobs/99999999999999999999",
        "/jobs/1%20OR%201%3D1",
        "/jobs/-1",
        "/jobs/1/cancel/../retry",
    ]
    for path in odd_queries:
        response = client.get(path)
        assert response.status_code < 500, (path, response.text)
        if response.status_code == 200 and "jobs" in response.json():
            assert response.json()["jobs"] == [], path
    for path in ("/jobs/99999999999999999999/cancel", "/jobs/1%27/retry"):
        assert 400 <= client.post(path).status_code < 500, path

    listed = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert {j["id"]: j for j in listed} == created, "nothing else stored, table intact"
    log = server.output()
    assert TOKEN not in log, "the API token never reaches the log"
    assert "Traceback" not in log, log


def test_http_wrong_or_hostile_tokens_are_401_and_the_token_is_never_logged(served):
    server, client = served
    for token in ["x", "wrong", TOKEN[:-1], TOKEN + "x", "' OR 1=1 --", TOKEN.upper()]:
        response = client.get("/jobs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.post("/jobs", json={"type": "t"}).status_code == 401
        assert anonymous.get(f"/jobs?token={TOKEN}").status_code == 401
    assert client.get("/jobs").status_code == 200
    log = server.output()
    assert TOKEN not in log and TOKEN[:-1] not in log, "the API token never reaches the log"
    assert "Traceback" not in log, log

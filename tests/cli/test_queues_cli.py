"""`conveyor queues list/set/pause/resume` and `enqueue --concurrency-key` (SPEC §7), through
real subprocesses on both stores."""

from __future__ import annotations

import json

import pytest

from conveyor.jobs import QueueSettings, RateLimit
from conveyor.stores import open_store
from tests.cli.test_cli import assert_one_line_error, run

SETTINGS = {
    "name",
    "concurrency",
    "rate_limit",
    "key_concurrency",
    "fair",
    "paused",
    "paused_until",
}


def settings_in(url: str) -> list[QueueSettings]:
    store = open_store(url)
    try:
        return store.list_queues()
    finally:
        store.close()


def ok(*args: str, url: str) -> str:
    proc = run(*args, url=url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_the_spec_commands(store_url):
    job = json.loads(
        ok(
            "enqueue",
            "payment",
            "--payload",
            '{"order_id": "A"}',
            "--queue",
            "payments",
            "--concurrency-key",
            "tenant-42",
            url=store_url,
        )
    )
    assert (job["queue"], job["concurrency_key"]) == ("payments", "tenant-42")
    shown = json.loads(ok("jobs", "show", str(job["id"]), url=store_url))
    assert shown["concurrency_key"] == "tenant-42"

    payments = json.loads(
        ok(
            "queues",
            "set",
            "payments",
            "--concurrency",
            "2",
            "--rate-limit",
            "10/s",
            "--key-concurrency",
            "1",
            url=store_url,
        )
    )
    assert payments == {
        "name": "payments",
        "concurrency": 2,
        "rate_limit": "10/s",
        "key_concurrency": 1,
        "fair": False,
        "paused": False,
        "paused_until": None,
    }
    assert json.loads(ok("queues", "set", "reports", "--fair", url=store_url))["fair"] is True
    assert json.loads(ok("queues", "pause", "payments", url=store_url))["paused"] is True
    listed = json.loads(ok("queues", "list", "--json", url=store_url))
    assert [q["name"] for q in listed["queues"]] == ["payments", "reports"]
    assert listed["queues"][0] == {**payments, "paused": True, "counts": {"pending": 1}}
    assert set(listed["queues"][1]) == SETTINGS | {"counts"}
    assert json.loads(ok("queues", "resume", "payments", url=store_url))["paused"] is False
    assert settings_in(store_url) == [
        QueueSettings("payments", concurrency=2, rate_limit=RateLimit(10, 1), key_concurrency=1),
        QueueSettings("reports", fair=True),
    ]


def test_the_table(store_url):
    assert ok("queues", "list", url=store_url).strip() == "no queues"
    ok("queues", "set", "payments", "--concurrency", "2", "--rate-limit", "600/m", url=store_url)
    ok("queues", "pause", "payments", url=store_url)
    ok("enqueue", "print", "--queue", "payments", url=store_url)
    ok("enqueue", "print", url=store_url)
    lines = ok("queues", "list", url=store_url).splitlines()
    assert lines[0].split() == [
        "queue",
        "concurrency",
        "rate_limit",
        "key_concurrency",
        "fair",
        "paused",
        "paused_until",
        "pending",
        "processing",
        "total",
    ]
    assert set(lines[1]) <= {"-", " "}
    # (paused_until is empty on both rows)
    assert lines[2].split() == ["default", "none", "none", "none", "no", "no", "1", "0", "1"]
    assert lines[3].split() == ["payments", "2", "600/m", "none", "no", "yes", "1", "0", "1"]


def test_only_the_given_options_change_and_none_clears(store_url):
    ok(
        "queues",
        "set",
        "q",
        "--concurrency",
        "3",
        "--rate-limit",
        "5000/h",
        "--key-concurrency",
        "2",
        "--fair",
        url=store_url,
    )
    cleared = json.loads(ok("queues", "set", "q", "--rate-limit", "none", url=store_url))
    assert (cleared["concurrency"], cleared["rate_limit"], cleared["key_concurrency"]) == (
        3,
        None,
        2,
    )
    assert cleared["fair"] is True
    unfair = json.loads(
        ok("queues", "set", "q", "--no-fair", "--concurrency", "none", url=store_url)
    )
    assert (unfair["fair"], unfair["concurrency"], unfair["key_concurrency"]) == (False, None, 2)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--concurrency", "0"], "concurrency must be between 1 and 999999999, got 0"),
        (["--concurrency", "two"], "concurrency must be an integer of at least 1, or none"),
        (["--key-concurrency", "-1"], "key_concurrency must be an integer of at least 1"),
        (["--rate-limit", "10/d"], "rate_limit must be N/s, N/m or N/h"),
        (["--rate-limit", "10"], "rate_limit must be N/s, N/m or N/h"),
        ([], "nothing to set"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_change_nothing(sqlite_url, args, fragment):
    ok("migrate", url=sqlite_url)
    ok("queues", "set", "q", "--concurrency", "1", url=sqlite_url)
    proc = run("queues", "set", "q", *args, url=sqlite_url)
    assert proc.returncode == 2
    assert_one_line_error(proc, fragment)
    assert settings_in(sqlite_url) == [QueueSettings("q", concurrency=1)]


@pytest.mark.parametrize("command", ["set", "pause", "resume"])
def test_bad_names_exit_2(sqlite_url, command):
    ok("migrate", url=sqlite_url)
    extra = ["--fair"] if command == "set" else []
    proc = run("queues", command, "q" * 201, *extra, url=sqlite_url)
    assert proc.returncode == 2
    assert_one_line_error(proc, "queue must be 1 to 200 characters, got 201")
    assert settings_in(sqlite_url) == []


def test_bad_concurrency_key(sqlite_url):
    ok("migrate", url=sqlite_url)
    proc = run("enqueue", "print", "--concurrency-key", "k" * 256, url=sqlite_url)
    assert_one_line_error(proc, "concurrency_key must be 1 to 255 characters, got 256")


def test_queue_commands_need_a_schema(sqlite_url):
    for args in (["list"], ["set", "q", "--fair"], ["pause", "q"], ["resume", "q"]):
        assert_one_line_error(run("queues", *args, url=sqlite_url), "run `conveyor migrate`")


def test_database_url_option_wins(sqlite_url, tmp_path):
    ok("migrate", url=sqlite_url)
    proc = run(
        "queues",
        "pause",
        "q",
        "--database-url",
        sqlite_url,
        url=f"sqlite:///{tmp_path / 'other.db'}",
    )
    assert proc.returncode == 0, proc.stderr
    assert settings_in(sqlite_url) == [QueueSettings("q", paused=True)]

"""The CLI through real subprocesses: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.stores import sqlfile
from tests.support.procs import CONVEYOR, ROOT


def run(*args: str, url: str | None = None, cwd=ROOT, env: dict[str, str] | None = None):
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url:
        full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run(
        [CONVEYOR, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(proc, fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]


def test_enqueue_show_cancel_retry_stats(store_url):
    made = run(
        "enqueue",
        "reverse",
        "--payload",
        '"hello"',
        "--priority",
        "3",
        "--queue",
        "q",
        url=store_url,
    )
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    assert (job["type"], job["payload"], job["priority"], job["queue"], job["status"]) == (
        "reverse",
        "hello",
        3,
        "q",
        "pending",
    )
    shown = json.loads(run("jobs", "show", str(job["id"]), url=store_url).stdout)
    assert shown == job
    cancelled = json.loads(run("jobs", "cancel", str(job["id"]), url=store_url).stdout)
    assert cancelled["status"] == "cancelled"
    again = run("jobs", "cancel", str(job["id"]), url=store_url)
    assert_one_line_error(again, "cannot cancel")
    retried = json.loads(run("jobs", "retry", str(job["id"]), url=store_url).stdout)
    assert retried["status"] == "pending"
    stats = json.loads(run("stats", "--json", url=store_url).stdout)
    assert stats == {"queues": {"q": {"pending": 1}}}
    table = run("stats", url=store_url).stdout
    assert "q" in table and "pending" in table
    listed = json.loads(run("jobs", "list", "--json", "--status", "pending", url=store_url).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]


def test_unique_key_and_delay(store_url):
    a = json.loads(
        run("enqueue", "print", "--unique-key", "K1", "--delay", "60", url=store_url).stdout
    )
    b = json.loads(run("enqueue", "print", "--unique-key", "K1", url=store_url).stdout)
    assert a["id"] == b["id"]
    assert a["run_at"] > a["created_at"]


def test_absent_job_exits_1_with_a_message(store_url):
    proc = run("jobs", "show", "999999", url=store_url)
    assert proc.returncode == 1
    assert_one_line_error(proc, "job 999999 not found")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "nope"], "unknown task type 'nope'"),
        (["enqueue", "reverse", "--payload", "{bad"], "--payload is not valid JSON"),
        (["enqueue", "reverse", "--priority", "99999"], "priority must be between"),
        (["enqueue", "reverse", "--delay", "-5"], "delay must be between"),
        (["prune", "--older-than", "soon"], "bad duration"),
    ],
)
def test_bad_input_gives_one_line_and_changes_nothing(sqlite_url, args, fragment):
    assert run("migrate", url=sqlite_url).returncode == 0
    proc = run(*args, url=sqlite_url)
    assert_one_line_error(proc, fragment)
    stats = run("stats", "--json", url=sqlite_url)
    assert json.loads(stats.stdout) == {"queues": {}}


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://x", "unsupported DATABASE_URL"),
        ("sqlite://", "SQLite URL"),
        ("sqlite:////nonexistent/dir/x.db", "cannot open SQLite database"),
        ("postgresql://nobody@127.0.0.1:1/nodb", "PostgreSQL"),
    ],
)
def test_bad_or_unreachable_database_url(url, fragment):
    for args in (["stats"], ["migrate"], ["worker"], ["enqueue", "print"]):
        proc = run(*args, "--database-url", url)
        assert_one_line_error(proc, fragment)


def test_migrate_is_idempotent_and_dotenv_is_read(tmp_path):
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'env.db'}\n")
    first = run("migrate", cwd=tmp_path)
    latest = sqlfile.migrations("conveyor.stores.sqlite")[-1][0]
    assert first.returncode == 0 and f"to {latest}" in first.stdout
    second = run("migrate", cwd=tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout
    assert (tmp_path / "env.db").exists()


def test_seed_and_prune(sqlite_url):
    seeded = run("seed", "--count", "2500", url=sqlite_url)
    assert seeded.returncode == 0, seeded.stderr
    listed = json.loads(run("jobs", "list", "--json", "--limit", "1000", url=sqlite_url).stdout)
    payloads = {j["payload"] for j in listed["jobs"]}
    assert "Test task 2500" in payloads and all(j["type"] == "demo" for j in listed["jobs"])
    stats = json.loads(run("stats", "--json", url=sqlite_url).stdout)
    assert stats == {"queues": {"default": {"pending": 2500}}}
    pruned = run("prune", "--older-than", "0s", url=sqlite_url)
    assert pruned.returncode == 0 and "pruned 0" in pruned.stdout  # nothing finished yet


def test_prune_durations_from_zero_to_100_years_and_one_line_exit_2_beyond(store_url):
    job = json.loads(run("enqueue", "print", url=store_url).stdout)
    assert run("jobs", "cancel", str(job["id"]), url=store_url).returncode == 0  # finished
    run("enqueue", "print", url=store_url)  # (SQLite never prunes the newest job)
    bad = ("99999999999d", "9999999d", "36501d", "876001h", "1" * 400, "soon", "-1d")
    good = ("36500d", "876000h", "5214w", "7d", "12h", "1.5h", "90")
    with ThreadPoolExecutor(4) as pool:  # a process each: about a second apiece
        procs = list(pool.map(lambda d: run("prune", "--older-than", d, url=store_url), bad + good))
    for duration, proc in zip(bad, procs[: len(bad)], strict=True):
        assert proc.returncode == 2, (duration, proc.stderr)
        assert proc.stdout == ""
        fragment = "bad duration" if duration in ("soon", "-1d") else "at most 36500d (100 years)"
        assert_one_line_error(proc, fragment)
        assert proc.stderr.startswith("error: "), proc.stderr
    for duration, proc in zip(good, procs[len(bad) :], strict=True):
        assert proc.returncode == 0, (duration, proc.stderr)
        assert proc.stdout.startswith("pruned 0 "), (duration, proc.stdout)
    assert run("jobs", "show", str(job["id"]), url=store_url).returncode == 0, "kept so far"
    pruned = run("prune", "--older-than", "0d", url=store_url)
    assert (pruned.returncode, pruned.stdout) == (0, "pruned 1 finished jobs older than 0d\n")
    assert run("prune", "--older-than", "0", url=store_url).stdout.startswith("pruned 0 ")


def test_read_commands_on_a_database_without_schema(sqlite_url):
    assert_one_line_error(run("stats", url=sqlite_url), "run `conveyor migrate`")


def test_every_command_has_help():
    # each command's own --help is run by tests/cli/test_help_options.py
    proc = run("--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout
    for command in ("migrate", "worker", "serve", "enqueue", "seed", "jobs", "stats", "prune"):
        assert command in proc.stdout, command
    worker_help = run("worker", "--help").stdout
    for option in (
        "--database-url",
        "--app",
        "--workers",
        "--fetch-interval",
        "--fetch-limit",
        "--queues",
        "--lease",
        "--shutdown-timeout",
        "--log-format",
        "--log-level",
        "--max-attempts",
    ):
        assert option in worker_help

"""`conveyor enqueue --depends-on 1,2 [--on-dependency-failure run]` (SPEC §8) through real
subprocesses; bad lists and unknown ids are one-line errors that store nothing."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import assert_one_line_error, run


def test_enqueue_with_dependencies(store_url):
    first = json.loads(run("enqueue", "reverse", "--payload", '"a"', url=store_url).stdout)
    second = json.loads(run("enqueue", "reverse", "--payload", '"b"', url=store_url).stdout)
    made = run(
        "enqueue",
        "reverse",
        "--payload",
        '"c"',
        "--depends-on",
        f"{first['id']}, {second['id']}",
        "--on-dependency-failure",
        "run",
        url=store_url,
    )
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    assert job["depends_on"] == [first["id"], second["id"]]
    assert job["on_dependency_failure"] == "run" and job["status"] == "pending"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depends-on", "1,x"], "comma-separated job ids"),
        (["--depends-on", ""], "comma-separated job ids"),
        (["--depends-on", "424242"], "no job 424242"),
        (["--depends-on", "1", "--on-dependency-failure", "skip"], "on_dependency_failure"),
    ],
)
def test_bad_dependencies_are_one_line_errors(store_url, args, message):
    run("enqueue", "reverse", "--payload", '"a"', url=store_url)
    proc = run("enqueue", "reverse", "--payload", '"b"', *args, url=store_url)
    assert_one_line_error(proc, message)
    listed = json.loads(run("jobs", "list", "--json", url=store_url).stdout)["jobs"]
    assert len(listed) == 1

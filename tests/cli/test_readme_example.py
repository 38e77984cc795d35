"""README.md's "Use it" example, run exactly as written, with real processes (SPEC §3
"Which database"). The module, the Python snippet and the shell commands are read from
README.md itself, so the README and this test cannot drift apart."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from conveyor.settings import redact_url
from conveyor.stores import open_store
from tests.support import pg
from tests.support.procs import CONVEYOR, ROOT
from tests.support.wait import wait_until

pytestmark = [pytest.mark.process]

README = ROOT / "README.md"
# Settings a developer's environment must not leak into the example's processes.
SETTING_VARS = (
    "DATABASE_URL",
    "CONVEYOR_APP",
    "WORKER_COUNT",
    "FETCH_INTERVAL",
    "FETCH_LIMIT",
    "CONVEYOR_QUEUES",
    "LEASE_SECONDS",
    "SHUTDOWN_TIMEOUT",
    "HOST",
    "PORT",
    "API_TOKEN",
    "ALLOWED_HOSTS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "MAX_ATTEMPTS",
)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+) (.*)$")


@dataclass
class Example:
    module_path: str  # "myproject/jobs.py"
    module: str  # its source
    snippet: str  # "anywhere in your code"
    commands: list[list[str]]  # the shell block, comments dropped


def readme_example(title: str = "Use it") -> Example:
    """The example of README section `title`: its module (the first Python block, headed by
    its path), the Python block after it, and its first shell block."""
    section = README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    python = [body for lang, body in blocks if lang == "python"]
    module = next(b for b in python if re.match(r"# \S+\.py\n", b))
    snippet = python[python.index(module) + 1]
    shell = next(body for lang, body in blocks if lang == "sh")
    commands = [shlex.split(line, comments=True) for line in shell.splitlines() if line.strip()]
    return Example(
        module_path=module.splitlines()[0].removeprefix("# ").strip(),
        module=module,
        snippet=snippet,
        commands=[c for c in commands if c],
    )


def example_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def argv(command: list[str]) -> list[str]:
    assert command[0] == "conveyor", command
    return [CONVEYOR, *command[1:]]


def log_lines(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [m.groups() for m in map(LOG_LINE.match, lines) if m]  # type: ignore[misc]


class ExampleRun:
    """The example in `tmp`: the module written where the README says, the background
    commands (serve, worker) started, the others run one by one."""

    def __init__(self, tmp: Path, example: Example, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.example = example
        self.env = env
        self.background: list[tuple[list[str], subprocess.Popen[bytes], Path]] = []
        module_file = tmp / example.module_path
        module_file.parent.mkdir(parents=True, exist_ok=True)
        module_file.write_text(example.module)

    def start(self, command: list[str]) -> None:
        log = self.tmp / f"{command[1]}-{len(self.background)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv(command), cwd=self.tmp, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.background.append((command, proc, log))

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv(command), cwd=self.tmp, env=self.env, capture_output=True, text=True, timeout=60
        )

    def run_snippet(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", self.example.snippet],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def wait_started(self) -> None:
        for command, proc, log in self.background:

            def started(proc=proc, log=log, command=command) -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"{command} exited {proc.returncode}:\n{log.read_text()}")
                text = log.read_text(errors="replace")
                return "worker " in text and " started: " in text

            wait_until(started, timeout=30, message=f"{command} did not start")

    def stop(self) -> list[int]:
        codes = []
        for _, proc, _ in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.background:
            try:
                codes.append(proc.wait(timeout=40))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=10))
        return codes


def run_the_example(
    tmp: Path, example: Example, app_url: str, store_url: str, *, wait_delayed: bool
) -> None:
    """Everything the README says, in its order: serve and worker in the background, the
    Python snippet, then each remaining command. DATABASE_URL points elsewhere on purpose:
    the app names its own store (`app_url`; `store_url` reaches it from here), which must
    win."""
    decoy = tmp / "elsewhere.db"
    env = example_env(PORT="0", FETCH_INTERVAL="1", DATABASE_URL=f"sqlite:///{decoy}")
    run = ExampleRun(tmp, example, env)
    background = [c for c in example.commands if c[1] in ("serve", "worker")]
    assert [c[1] for c in background] == ["serve", "worker"]
    assert all("--app" in c for c in example.commands[2:]), "every command names the app"
    try:
        for command in background:
            run.start(command)
        run.wait_started()

        produced = run.run_snippet()
        assert produced.returncode == 0, produced.stderr
        assert produced.stdout.strip() in ("pending", "processing", "done"), produced.stdout

        outputs = {}
        for command in example.commands:
            if command in background:
                continue
            done = run.run(command)
            outputs[" ".join(command[1:3])] = done
            if command[1:3] == ["jobs", "retry"]:  # `jobs retry 42`: there is no job 42
                assert done.returncode == 1 and done.stderr == "error: job 42 not found\n"
                continue
            assert done.returncode == 0, (command, done.stderr)
            assert "Traceback" not in done.stderr
        enqueued = json.loads(outputs["enqueue reverse"].stdout)
        assert (enqueued["type"], enqueued["payload"]) == ("reverse", "hello")

        store = open_store(store_url)
        try:

            def finished() -> bool:
                reverse = [j for j in _jobs(store) if j.type == "reverse"]
                return len(reverse) == 2 and all(j.status == "done" for j in reverse)

            wait_until(finished, timeout=30, message="both reverse jobs done")
            assert [j.result for j in _jobs(store) if j.type == "reverse"] == ["olleh", "olleh"]
            payment = next(j for j in _jobs(store) if j.type == "payment")
            assert (payment.queue, payment.priority, payment.unique_key) == (
                "payments",
                3,
                "ORD-1001",
            )
            if wait_delayed:  # enqueued with delay=10
                wait_until(
                    lambda: next(j for j in _jobs(store) if j.type == "payment").status == "done",
                    timeout=30,
                    message="the delayed payment job done",
                )
        finally:
            store.close()
    finally:
        codes = run.stop()
    assert codes == [0, 0]
    for command, _, log in run.background:
        lines = log_lines(log)
        assert lines, log.read_text()
        assert lines[0] == ("INFO", f"store: {redact_url(app_url)}"), (command, lines[:3])
        assert any("DATABASE_URL" in msg and "is not used" in msg for _, msg in lines[:3])
    assert not decoy.exists(), "DATABASE_URL must not win over the app's own URL"
    assert not (tmp / "conveyor.db").exists()


def _jobs(store):
    from conveyor.jobs import JobFilter

    return sorted(store.list_jobs(JobFilter(limit=100)), key=lambda j: j.id)


def test_the_readme_names_a_module_a_snippet_and_commands():
    example = readme_example()
    assert example.module_path == "myproject/jobs.py"
    assert 'Conveyor("sqlite:///jobs.db")' in example.module
    assert "from myproject.jobs import" in example.snippet
    assert [c[:2] for c in example.commands][:3] == [
        ["conveyor", "serve"],
        ["conveyor", "worker"],
        ["conveyor", "enqueue"],
    ]


@pytest.mark.slow
def test_the_readme_example_runs_as_written_on_sqlite(tmp_path):
    example = readme_example()
    absolute = f"sqlite:///{tmp_path / 'jobs.db'}"
    run_the_example(tmp_path, example, "sqlite:///jobs.db", absolute, wait_delayed=True)
    assert (tmp_path / "jobs.db").exists()


PASSWORD = "s3cret-pw"


def with_password(url: str) -> str:
    """`url` with a password, when the server lets it in anyway (trust authentication, as
    in the test setup), so that the logs can be checked for it; else `url` as it is."""
    if not re.match(r"^postgres(ql)?://[^:/@]+@", url):
        return url
    candidate = re.sub(r"^(postgres(?:ql)?://[^:/@]+)@", rf"\1:{PASSWORD}@", url)
    try:
        psycopg.connect(candidate, connect_timeout=3).close()
    except psycopg.Error:
        return url
    return candidate


def test_the_readme_example_runs_on_postgresql_when_the_app_names_it(tmp_path):
    """The same module with a PostgreSQL URL in place of the SQLite one, on an empty
    database: serve and worker create the schema, every command uses that database."""
    pg.require_postgres()
    url = pg.create_database("conveyor_readme")
    try:
        url = with_password(url)
        example = readme_example()
        example.module = example.module.replace('"sqlite:///jobs.db"', json.dumps(url))
        assert url in example.module
        run_the_example(tmp_path, example, url, url, wait_delayed=False)
        assert not (tmp_path / "jobs.db").exists()
        for log in tmp_path.glob("*.log"):
            assert PASSWORD not in log.read_text(), "the password is never logged"
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert count == (3,)
    finally:
        pg.drop_database(url)

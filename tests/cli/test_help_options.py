"""`--help` of every command shows each option's environment variable and default (SPEC §3).

The help texts say `[env: NAME; default: VALUE]`; Rich markup used to eat them, so this reads
the real `conveyor … --help` output of every command, not the help strings."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
import typer

from conveyor.cli.main import cli
from conveyor.settings import Settings
from tests.support.procs import CONVEYOR, ROOT


def commands() -> list[tuple[list[str], Any]]:
    """Every command of the CLI, as its argv path and click command (groups recursed;
    Typer brings its own copy of click, so this goes by attributes, not classes)."""
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk([*path, name], sub)
        else:
            found.append((path, command))

    walk([], typer.main.get_command(cli))
    return found


def env_name(field: str) -> str:
    """The SPEC environment variable of a Settings field (the upper-case alias)."""
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", [alias])
    return next(str(c) for c in choices if isinstance(c, str) and c.isupper())


def default_text(field: str) -> str | None:
    """What the help must show as a setting's default, when it is a plain value."""
    value = Settings.model_fields[field].default
    if isinstance(value, bool) or value is None or value == "":
        return None  # described in words ("all queues", "loopback names only", …)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def option_entries(help_text: str) -> dict[str, str]:
    """`--option` -> its whole entry in the Options section, wrapped lines joined."""
    entries: dict[str, str] = {}
    current: str | None = None
    for line in help_text.splitlines():
        start = re.match(r"^  (--[\w-]+)", line)
        if start:
            current = start.group(1)
            entries[current] = line.strip()
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def run_help(path: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run(
        [CONVEYOR, *path, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


ALL = commands()


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in ALL}
    assert {
        "migrate",
        "serve",
        "worker",
        "enqueue",
        "seed",
        "stats",
        "prune",
        "jobs list",
        "jobs show",
        "jobs retry",
        "jobs cancel",
    } <= names


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_shows_every_options_environment_variable_and_default(path, command):
    text = run_help(path)
    assert "Usage: conveyor " + " ".join(path) in text
    entries = option_entries(text)
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        flag = max(param.opts, key=len)
        entry = entries.get(flag)
        assert entry is not None, f"{' '.join(path)} --help does not list {flag}:\n{text}"
        assert "default" in entry, f"{flag} of {' '.join(path)} shows no default: {entry!r}"
        if param.name in Settings.model_fields:
            name = env_name(param.name)
            assert f"env: {name}" in entry, f"{flag} of {' '.join(path)} hides {name}: {entry!r}"
            shown = default_text(param.name)
            if shown is not None:
                assert shown in entry.split("default", 1)[1], (flag, shown, entry)
        # markup never swallows the bracketed text again
        assert entry.count("[") == entry.count("]"), entry


def test_spec_options_show_their_environment_variables_in_worker_and_serve_help():
    for command in ("worker", "serve"):
        text = " ".join(run_help([command]).split())
        for env in (
            "DATABASE_URL",
            "CONVEYOR_APP",
            "WORKER_COUNT",
            "FETCH_INTERVAL",
            "FETCH_LIMIT",
            "CONVEYOR_QUEUES",
            "LEASE_SECONDS",
            "SHUTDOWN_TIMEOUT",
            "LOG_FORMAT",
            "LOG_LEVEL",
            "MAX_ATTEMPTS",
        ):
            assert f"env: {env}" in text, (command, env)
        assert "else sqlite:///conveyor.db" in text
    serve = " ".join(run_help(["serve"]).split())
    assert "env: HOST; default: 127.0.0.1" in serve
    assert "env: PORT; default: 8080" in serve

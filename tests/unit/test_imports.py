"""What `import conveyor` and `conveyor worker` load: a program that only enqueues, and a
worker process, start without the HTTP stack or the settings machinery they do not use."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_import_conveyor_with_explicit_settings_loads_neither_settings_nor_http():
    # Settings (pydantic-settings, ~90 ms of import) are read only for what the program
    # leaves to the environment: here the URL and the default max_attempts are given.
    modules = loaded_after(
        "import conveyor\n"
        "app = conveyor.Conveyor('sqlite:///unused.db', max_attempts=3)\n"
        "app.build_job('t', {'a': 1})"
    )
    assert "conveyor.app" in modules
    heavy = {"pydantic_settings", "conveyor.settings", "fastapi", "uvicorn", "jinja2"}
    assert not heavy & modules, heavy & modules


def test_the_worker_command_loads_no_http_stack():
    modules = loaded_after("import conveyor.cli.main\nimport conveyor.process")
    assert "conveyor.settings" in modules
    assert not {"fastapi", "uvicorn", "jinja2", "prometheus_client"} & modules

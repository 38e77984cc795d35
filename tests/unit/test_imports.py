"""What `import conveyor` and `conveyor worker` load: a program that only enqueues, and a
worker process, start without the HTTP stack they do not use."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_import_conveyor_loads_no_http_stack():
    modules = loaded_after("import conveyor\napp = conveyor.Conveyor('sqlite:///unused.db')")
    assert "conveyor.app" in modules
    assert not {"fastapi", "uvicorn", "jinja2", "prometheus_client"} & modules


def test_the_worker_command_loads_no_http_stack():
    modules = loaded_after("import conveyor.cli.main\nimport conveyor.process")
    assert "conveyor.settings" in modules
    assert not {"fastapi", "uvicorn", "jinja2", "prometheus_client"} & modules

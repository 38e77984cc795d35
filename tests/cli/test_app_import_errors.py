"""An --app module that fails to import: one line naming the file and line that failed,
never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conveyor.errors import ConfigurationError
from conveyor.loader import load_app
from tests.support.procs import CONVEYOR

BROKEN = {
    # module source -> the line the CLI must print
    "missing dependency": (
        "import os\n\nimport requests_that_is_not_installed\n",
        "error: cannot import myapp.jobs: ModuleNotFoundError: No module named "
        "'requests_that_is_not_installed' (myapp/jobs.py, line 3)",
    ),
    "syntax error": (
        "from conveyor import Conveyor\n\napp = Conveyor(\n",
        "error: cannot import myapp.jobs: SyntaxError: '(' was never closed "
        "(myapp/jobs.py, line 3)",
    ),
    "error at import time": (
        "import os\n\nTOKEN = os.environ['MYAPP_TOKEN_NOT_SET']\n",
        "error: cannot import myapp.jobs: KeyError: 'MYAPP_TOKEN_NOT_SET' (myapp/jobs.py, line 3)",
    ),
    "failing import in a module it imports": (
        "from myapp import helpers\n",
        "error: cannot import myapp.jobs: ImportError: cannot import name 'nope' from 'json' ",
    ),
}


def write_app(tmp_path, source: str) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(source)
    (tmp_path / "myapp" / "helpers.py").write_text("import json\n\n\nfrom json import nope\n")


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CONVEYOR_APP")}
    return subprocess.run(
        [CONVEYOR, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", list(BROKEN))
def test_import_error_names_the_file_and_line_in_one_line(tmp_path, case):
    source, expected = BROKEN[case]
    write_app(tmp_path, source)
    for command in (["worker"], ["enqueue", "x"], ["stats"]):
        proc = run(tmp_path, *command, "--app", "myapp.jobs:app")
        assert proc.returncode == 1, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(expected), (lines[0], expected)
        if case == "failing import in a module it imports":
            assert lines[0].endswith("(myapp/helpers.py, line 4)"), lines[0]
    assert not (tmp_path / "conveyor.db").exists()


def test_a_module_that_does_not_exist_says_where_it_was_looked_for(tmp_path):
    proc = run(tmp_path, "worker", "--app", "nosuchproject.jobs:app")
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: cannot import nosuchproject.jobs: ModuleNotFoundError: No module named "
        "'nosuchproject' (looked in the working directory and on sys.path)\n"
    )


def test_load_app_raises_a_configuration_error_with_the_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_app puts the directory there
    (tmp_path / "brokenapp_x1.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigurationError) as caught:
        load_app("brokenapp_x1:app")
    assert str(caught.value) == (
        "cannot import brokenapp_x1: RuntimeError: boom (brokenapp_x1.py, line 2)"
    )

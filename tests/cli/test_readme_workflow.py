"""README.md's "Workflows" example, run exactly as written with a real worker process: the
module, the snippet and the command are read from README.md, so they cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.test_readme_example import ExampleRun, example_env, readme_example

pytestmark = [pytest.mark.process]


def test_the_readme_workflow_runs_as_written(tmp_path: Path):
    example = readme_example("Workflows")
    assert [c[:2] for c in example.commands] == [["conveyor", "worker"]]
    run = ExampleRun(tmp_path, example, example_env(FETCH_INTERVAL="1"))
    try:
        run.start(example.commands[0])
        run.wait_started()
        produced = run.run_snippet()
        assert produced.returncode == 0, produced.stderr
        # the snippet's own comment says what it prints
        expected = re.search(r"print\(.*\)\s+# (.+)", example.snippet)
        assert expected is not None
        assert produced.stdout.strip() == expected.group(1).strip() == "done 43"
    finally:
        codes = run.stop()
    assert codes == [0]

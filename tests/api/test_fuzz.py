"""Fuzz every operation of /openapi.json against the live server, on each store.

Schemathesis generates schema-valid (positive) and schema-breaking (negative) requests;
each response must be no 5xx and must match the documented statuses and shapes. The
test prints how many requests it sent and how many 5xx it saw (`pytest -s`), and writes
the same summary to fuzz-summary.json in its tmp dir. CONVEYOR_FUZZ_EXAMPLES raises the
number of examples per operation and mode (default 25) for a longer run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "25"))

pytestmark = pytest.mark.slow


def _fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    tally: Counter[str],
    problems: list[str],
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        where = f"{operation.label} [{mode.value}]"
        try:
            response = case.call(base_url=base_url, session=session, timeout=30)
        except requests.RequestException as exc:  # a dropped connection is a failure too
            tally["errors"] += 1
            problems.append(f"{where}: {exc}")
            return
        tally["requests"] += 1
        tally[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            problems.append(f"{where}: {response.status_code} {response.text[:300]}")
        if (
            mode is GenerationMode.POSITIVE
            and response.status_code == 422
            and "NUL character" not in response.text
            and "does not fit task" not in response.text
            and "depends_on: " not in response.text
        ):
            # Schema-valid input is accepted, except the rules the schema cannot say: no
            # NUL character anywhere in a payload (PostgreSQL cannot store it), a payload
            # must fit its task's signature (SPEC §2), and a dependency must name a job
            # that exists or an earlier item of the batch (SPEC §8).
            problems.append(f"{where}: valid input refused: {response.text[:300]}")
        try:
            # statuses, content types and bodies as documented; negative input refused
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except FailureGroup as failures:
            for failure in failures.exceptions:
                problems.append(f"{where}: {str(failure)[:300]}")

    try:
        run()
    except Unsatisfiable:
        tally["operations without negative cases"] += 1  # e.g. GET /healthz takes no input


def test_fuzz_openapi(live, client, tmp_path, store_url, count_jobs):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    tally: Counter[str] = Counter()
    problems: list[str] = []
    with requests.Session() as session:
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 10
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, live.url, session, tally, problems)

    summary = {
        "store": store_url.split(":", 1)[0],
        "operations": len(operations),
        "examples_per_operation_and_mode": MAX_EXAMPLES,
        "requests": tally["requests"],
        "5xx": tally["5xx"],
        "by_class": {k: v for k, v in sorted(tally.items()) if k.endswith("xx")},
        "jobs_stored": count_jobs(),
        "problems": problems[:50],
    }
    (tmp_path / "fuzz-summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nfuzz[{summary['store']}]: {tally['requests']} requests, {tally['5xx']} 5xx, "
        f"{len(problems)} problems, by class {summary['by_class']}"
    )

    assert tally["requests"] >= len(operations) * 2
    assert tally["5xx"] == 0, problems
    assert not problems, "\n".join(problems[:20])
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/jobs", params={"limit": 1}).status_code == 200

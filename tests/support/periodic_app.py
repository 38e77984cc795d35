"""The app of the periodic-job process tests (tests/process/test_periodic.py), run in real
`conveyor worker` processes: `beat` ticks every second; each run appends one line
`unique_key pid time` to $CONVEYOR_TEST_RECORD (O_APPEND writes of one short line are
atomic), so the test counts runs by the task's own records, not only by the jobs' rows.
`nightly-export` (03:00 in Berlin) shows a schedule of another task, by name, in listings."""

from __future__ import annotations

import os
import time

from conveyor import Conveyor, current_job

app = Conveyor()


@app.periodic("* * * * * *")
def beat() -> None:
    line = f"{current_job().job.unique_key} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(os.environ["CONVEYOR_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.task
def export(report_id: int) -> int:
    return report_id


app.periodic(
    "0 3 * * *",
    task="export",
    payload={"report_id": 7},
    name="nightly-export",
    timezone="Europe/Berlin",
)

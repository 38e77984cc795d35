"""The live dashboard (SPEC §9) in a real Chromium, against a real server on each store:
live counts, filters and pages, every action with its confirmation, escaping, the API
token form, narrow screens and the workers registry."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.jobs import JobStatus, utcnow
from conveyor.stores import Store
from tests.api.servers import ThreadedApi, api_settings, make_app
from tests.dashboard.conftest import (
    NARROW,
    PAGES,
    SCREENSHOTS,
    TOKEN,
    WIDE,
    XSS,
    Dashboard,
    claim,
    failed_jobs,
    served,
)
from tests.support import pg
from tests.support.factories import LEASE
from tests.support.wait import wait_until

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if pg.CI:
        raise
    pytest.skip("Playwright is not installed: pip install -e '.[dev]'", allow_module_level=True)

# last_error as a worker writes it: `Type: message`, then the last frames
SMTP_ERROR = """SMTPDataError: (421, b'4.7.0 Try again later')
Traceback (most recent call last):
  File "app/mail.py", line 41, in send
    smtp.sendmail(sender, [to], message)
"""


def open_page(page: Page, url: str) -> Any:
    """Go to `url` and wait until the page's script has filled it once."""
    response = page.goto(url)
    page.wait_for_selector("body[data-refreshes]", state="attached")
    return response


def confirm(page: Page, expected: str = "") -> None:
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    if expected:
        expect(page.locator("#confirm-text")).to_contain_text(expected)
    page.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()


# -- Overview -------------------------------------------------------------------------------------
def test_overview_counts_change_without_a_reload(dashboard, clocked_page, names):
    page = clocked_page
    queue = names("live")
    for _ in range(3):
        dashboard.conveyor.enqueue("reverse", "abc", queue=queue)
    open_page(page, dashboard.base + "/")
    row = page.locator(f'#counts tr[data-queue="{queue}"]')
    expect(row.locator('td[data-status="pending"]')).to_have_text("3")
    page.evaluate("window.__sameDocument = true")

    done, also_done, failed = claim(dashboard.store, queue, 3)
    assert dashboard.store.complete(done.lease_ref())
    assert dashboard.store.complete(also_done.lease_ref())
    dashboard.store.fail(failed.lease_ref(), "boom", retry_at=None)
    page.clock.run_for(2_000)  # the page's next refresh, without waiting for it

    expect(row.locator('td[data-status="done"]')).to_have_text("2")
    expect(row.locator('td[data-status="failed"]')).to_have_text("1")
    expect(row.locator('td[data-status="pending"]')).to_have_text("0")
    expect(row.locator('td[data-status="total"]')).to_have_text("3")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    # the per-minute chart has drawn this minute's finished and failed jobs
    points = page.locator("#chart polyline.line-finished").get_attribute("points")
    assert points is not None and len(points.split()) == 60
    expect(page.locator("#wait-p50")).not_to_have_text("n/a")


def test_a_hidden_tab_stops_polling_and_refreshes_when_shown(dashboard, clocked_page):
    page = clocked_page
    # Count fetch() calls as the page makes them; its timers run on the test's clock.
    page.add_init_script(
        "window.__fetches = 0; const real = window.fetch;"
        "window.fetch = (...args) => { window.__fetches += 1; return real(...args); };"
    )
    open_page(page, dashboard.base + "/")

    def refreshes() -> int:
        return int(page.locator("body").get_attribute("data-refreshes") or 0)

    seen = refreshes()
    page.clock.run_for(2_100)
    wait_until(lambda: refreshes() > seen, message="no refresh after 2 s")

    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("#live")).to_have_text("paused while hidden")
    before = page.evaluate("window.__fetches")
    page.clock.run_for(20_000)
    assert page.evaluate("window.__fetches") == before, "a hidden tab kept polling"

    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    seen = refreshes()
    wait_until(lambda: refreshes() > seen, message="no refresh when shown again")
    assert page.evaluate("window.__fetches") > before


def test_a_store_that_is_down_is_said_on_the_page(page, tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'no-such-dir' / 'jobs.db'}")
    try:
        with ThreadedApi(app, api_settings()) as server:
            page.goto(server.url + "/")
            expect(page.locator("#banner")).to_contain_text("Could not refresh: cannot open")
            expect(page.locator("#counts-empty")).to_be_hidden()
    finally:
        app.close()


# -- Jobs and Job ---------------------------------------------------------------------------------
def test_filter_paginate_and_open_a_job(dashboard, page, names):
    queue = names("list")
    ids = [dashboard.conveyor.enqueue("reverse", {"n": n}, queue=queue).id for n in range(5)]
    dashboard.conveyor.enqueue("print", {"message": "not me"}, queue=queue)
    newest_first = [str(i) for i in reversed(ids)]

    open_page(page, dashboard.base + "/dashboard/jobs")
    page.locator("#filter-status").select_option("pending")
    page.locator("#filter-queue").fill(queue)
    page.locator("#filter-type").fill("reverse")
    page.locator("#filter button[type=submit]").click()
    page.wait_for_url(re.compile(r"status=pending&queue=.*&type=reverse"))
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(5)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first
    expect(page.locator("#older")).to_be_hidden()

    open_page(page, page.url + "&limit=2")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[:2]
    page.locator("#older").click()
    page.wait_for_url(re.compile(rf"before_id={newest_first[1]}"))
    expect(rows.first).to_have_attribute("data-id", newest_first[2])
    expect(rows).to_have_count(2)
    page.locator("#older").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", newest_first[4])
    page.locator("#newest").click()
    expect(rows.first).to_have_attribute("data-id", newest_first[0])

    rows.first.locator("a").click()
    page.wait_for_url(re.compile(rf"/dashboard/jobs/{newest_first[0]}$"))
    expect(page.locator("#job-status")).to_have_text("pending")
    expect(page.locator('#job-fields dd[data-field="type"]')).to_have_text("reverse")
    expect(page.locator('#job-fields dd[data-field="queue"]')).to_have_text(queue)
    expect(page.locator("#job-payload")).to_have_text('{\n  "n": 4\n}')
    expect(page.locator("#job-timeline li")).to_have_count(1)  # created


def test_job_page_shows_the_traceback_dependencies_dependents_and_timeline(dashboard, page, names):
    queue = names("detail")
    traceback = "Traceback (most recent call last):\n  File 'x.py', line 1\nValueError: no"
    dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    (attempt,) = claim(dashboard.store, queue, 1)  # fails once, then for good
    assert dashboard.store.fail(attempt.lease_ref(), "once", retry_at=utcnow()) == "pending"
    (first,) = claim(dashboard.store, queue, 1)
    assert dashboard.store.fail(first.lease_ref(), traceback, retry_at=None) == "failed"
    child = dashboard.conveyor.enqueue(
        "reverse", "x", queue=queue, depends_on=[first.id], on_dependency_failure="run"
    )
    open_page(page, f"{dashboard.base}/dashboard/jobs/{first.id}")
    expect(page.locator("#job-error")).to_have_text(traceback)
    # created, each start, finished
    expect(page.locator("#job-timeline li")).to_have_count(4)
    expect(page.locator("#job-timeline li").nth(1)).to_have_text(re.compile(r"started$"))
    expect(page.locator("#job-timeline li").nth(2)).to_contain_text("started (attempt 2 of")
    expect(page.locator("#job-timeline li").nth(3)).to_contain_text("finished: failed")
    # its dependent, named after it had failed already
    expect(page.locator("#job-dependents a")).to_have_text(f"#{child.id}")
    expect(page.locator("#job-dependents li")).to_contain_text("reverse · pending")

    open_page(page, f"{dashboard.base}/dashboard/jobs/{child.id}")
    link = page.locator("#job-dependencies a")
    expect(link).to_have_text(f"#{first.id}")
    link.click()
    page.wait_for_url(re.compile(rf"/dashboard/jobs/{first.id}$"))
    expect(page.locator("#job-status")).to_have_text("failed")

    open_page(page, f"{dashboard.base}/dashboard/jobs/999999999")
    expect(page.locator("#banner")).to_contain_text("does not exist")


def test_job_page_follows_a_running_jobs_progress(dashboard, clocked_page, names):
    page = clocked_page
    queue = names("progress")
    dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    (job,) = claim(dashboard.store, queue, 1)
    dashboard.store.heartbeat([job.lease_ref()], lease=LEASE, progress={job.id: (0.4, "step 2")})
    open_page(page, f"{dashboard.base}/dashboard/jobs/{job.id}")
    expect(page.locator("#job-status")).to_have_text("processing")
    expect(page.locator("#job-progress-text")).to_have_text("40 % · step 2")
    expect(page.locator("#job-cancel")).to_be_enabled()
    expect(page.locator("#job-retry")).to_be_disabled()

    dashboard.store.heartbeat([job.lease_ref()], lease=LEASE, progress={job.id: (0.8, "step 4")})
    page.clock.run_for(2_000)  # the page's next refresh
    expect(page.locator("#job-progress-text")).to_have_text("80 % · step 4")
    expect(page.locator("#job-progress")).to_have_js_property("value", 0.8)


def test_retry_a_failed_job_and_cancel_a_pending_one(dashboard, page, names):
    queue = names("act")
    (failed,) = failed_jobs(dashboard, queue, 1)
    open_page(page, f"{dashboard.base}/dashboard/jobs/{failed.id}")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-cancel")).to_be_disabled()
    page.locator("#job-retry").click()
    confirm(page, f"Retry job {failed.id}")
    expect(page.locator("#job-status")).to_have_text("pending")
    expect(page.locator("#banner")).to_have_text(f"Job {failed.id} retried.")
    assert dashboard.store.get_job(failed.id).status == JobStatus.PENDING

    # declining the confirmation changes nothing
    page.locator("#job-cancel").click()
    page.locator("#confirm-cancel").click()
    expect(page.locator("#confirm")).to_be_hidden()
    assert dashboard.store.get_job(failed.id).status == JobStatus.PENDING

    page.locator("#job-cancel").click()
    confirm(page, f"Cancel job {failed.id}")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert dashboard.store.get_job(failed.id).status == JobStatus.CANCELLED


def test_bulk_retry_and_cancel_of_the_filtered_set(dashboard, page, names):
    queue, other = names("bulk"), names("other")
    mine = failed_jobs(dashboard, queue, 3)
    (theirs,) = failed_jobs(dashboard, other, 1)

    open_page(page, f"{dashboard.base}/dashboard/jobs?status=failed&queue={queue}")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    expect(page.locator("#bulk-cancel")).to_be_disabled()
    page.locator("#bulk-retry").click()
    confirm(page, f"Retry every failed job of queue “{queue}”")
    expect(page.locator("#banner")).to_have_text("3 jobs retried.")
    expect(page.locator("#jobs-empty")).to_be_visible()
    assert {dashboard.store.get_job(j.id).status for j in mine} == {JobStatus.PENDING}
    assert dashboard.store.get_job(theirs.id).status == JobStatus.FAILED

    open_page(page, f"{dashboard.base}/dashboard/jobs?status=pending&queue={queue}")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    page.locator("#bulk-cancel").click()
    confirm(page, "Cancel every pending job")
    expect(page.locator("#banner")).to_have_text("3 jobs cancelled.")
    assert {dashboard.store.get_job(j.id).status for j in mine} == {JobStatus.CANCELLED}


# -- Queues ---------------------------------------------------------------------------------------
def _queue(store: Store, name: str) -> Any:
    return next(q for q in store.list_queues() if q.name == name)


def test_pause_resume_and_edit_limits(dashboard, page, names):
    queue = names("ctl")
    dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    open_page(page, dashboard.base + "/dashboard/queues")
    row = page.locator(f'#queues tr[data-queue="{queue}"]')
    expect(row.locator('td[data-field="state"]')).to_have_text("running")

    row.locator('button[data-action="pause"]').click()
    confirm(page, f"Pause queue “{queue}”")
    expect(row.locator('td[data-field="state"]')).to_have_text("paused")
    assert _queue(dashboard.store, queue).paused
    row.locator('button[data-action="resume"]').click()
    confirm(page, "Resume")
    expect(row.locator('td[data-field="state"]')).to_have_text("running")
    assert not _queue(dashboard.store, queue).paused

    row.locator('button[data-action="edit"]').click()
    page.locator("#edit-concurrency").fill("4")
    page.locator("#edit-rate-limit").fill("10/s")
    page.locator("#edit-fair").check()
    page.locator("#edit-save").click()
    confirm(page, "concurrency 4, rate limit 10/s")
    expect(row.locator('td[data-field="concurrency"]')).to_have_text("4")
    expect(row.locator('td[data-field="rate_limit"]')).to_have_text("10/s")
    expect(row.locator('td[data-field="fair"]')).to_have_text("yes")
    settings = _queue(dashboard.store, queue)
    assert (settings.concurrency, str(settings.rate_limit), settings.fair) == (4, "10/s", True)

    row.locator('button[data-action="edit"]').click()
    expect(page.locator("#edit-concurrency")).to_have_value("4")
    page.locator("#edit-concurrency").fill("")
    page.locator("#edit-save").click()
    confirm(page, "concurrency none")
    expect(row.locator('td[data-field="concurrency"]')).to_have_text("none")
    assert _queue(dashboard.store, queue).concurrency is None

    # a limit the API refuses is reported, and changes nothing
    row.locator('button[data-action="edit"]').click()
    page.locator("#edit-rate-limit").fill("lots")
    page.locator("#edit-save").click()
    confirm(page)
    expect(page.locator("#banner")).to_contain_text("Refused")
    assert str(_queue(dashboard.store, queue).rate_limit) == "10/s"


# -- escaping -------------------------------------------------------------------------------------
def test_job_data_is_text_and_runs_nothing(dashboard, page, names):
    queue = XSS + names("q")
    job = dashboard.conveyor.enqueue("reverse", XSS, queue=queue, unique_key=XSS + queue)
    (claimed,) = claim(dashboard.store, queue, 1)
    dashboard.store.fail(claimed.lease_ref(), XSS, retry_at=None)
    # the filter as typed comes back in the form (rendered by the server)
    open_page(page, f"{dashboard.base}/dashboard/jobs?queue={quote(queue)}&type={quote(XSS)}")
    expect(page.locator("#filter-type")).to_have_value(XSS)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    for path in (
        "/",
        "/dashboard/queues",
        f"/dashboard/jobs?queue={quote(queue)}",
        f"/dashboard/jobs/{job.id}",
    ):
        open_page(page, dashboard.base + path)
        expect(page.get_by_text(queue).first).to_be_visible()
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("main img").count() == 0, path
    expect(page.locator("#job-error")).to_have_text(XSS)
    expect(page.locator("#job-payload")).to_contain_text("<script>window.__pwned=1</script>")
    expect(page.locator('#job-fields dd[data-field="unique_key"]')).to_have_text(XSS + queue)
    assert page.evaluate("typeof window.__pwned") == "undefined"


# -- the API token --------------------------------------------------------------------------------
def test_with_a_token_no_job_data_shows_until_it_is_given(dashboard, secured, page, names):
    queue = names("secret")
    dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    data: list[tuple[str, int]] = []
    page.on("response", lambda r: data.append((r.url, r.status)))

    response = page.goto(secured.url + "/")
    assert response.status == 401
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#content")).to_be_hidden()
    assert queue not in page.content()
    answered = [url for url, status in data if status == 200 and "/dashboard/static/" not in url]
    assert answered == [], "data was fetched before the token was given"

    page.locator("#login-token").fill("wrong")
    page.locator("#login-token").press("Enter")
    expect(page.locator("#login-error")).to_have_text("That token was refused.")
    expect(page.locator("#content")).to_be_hidden()
    assert queue not in page.content()

    page.locator("#login-token").fill(TOKEN)
    page.locator("#login-form button").click()
    expect(page.locator(f'#counts tr[data-queue="{queue}"]')).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    # asked once: the other pages use the same token
    open_page(page, f"{secured.url}/dashboard/jobs?queue={queue}")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#login")).to_be_hidden()
    page.locator("#forget-token").click()
    expect(page.locator("#login")).to_be_visible()


# -- narrow screens and screenshots ---------------------------------------------------------------
def _seed_for_looks(dashboard: Dashboard, queue: str) -> int:
    """Long unbroken names and texts, as operators' data has them; returns a job id."""
    long_queue = queue + "-" + "x" * 150
    job = dashboard.conveyor.enqueue(
        "reverse", {"text": "y" * 400, "items": list(range(40))}, queue=long_queue
    )
    failed_jobs(dashboard, long_queue, 1, error="RuntimeError: " + "z" * 300)
    dashboard.conveyor.configure_queue(long_queue, concurrency=2, rate_limit="5/s")
    return job.id


def test_narrow_screens_never_scroll_sideways(dashboard, browser, names):
    job_id = _seed_for_looks(dashboard, names("narrow"))
    context = browser.new_context(viewport=NARROW)
    try:
        page = context.new_page()
        for path in [*PAGES, f"/dashboard/jobs/{job_id}"]:
            open_page(page, dashboard.base + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= NARROW["width"], (path, width)
    finally:
        context.close()


@pytest.mark.skipif(
    os.environ.get("CONVEYOR_SCREENSHOTS") != "1",
    reason="writes docs/screenshots only with CONVEYOR_SCREENSHOTS=1",
)
def test_screenshots(browser, tmp_path):
    with served("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}") as dashboard:
        _screenshots(dashboard, browser, tmp_path)


def _screenshots(dashboard: Dashboard, browser: Any, tmp_path: Path) -> None:
    """docs/screenshots/*.png, from a store holding what a small app's would."""
    app = dashboard.conveyor
    for n in range(12):
        app.enqueue("reverse", {"to": f"user{n}@example.com"}, queue="emails")
    ran = claim(dashboard.store, "emails", 9)
    for job in ran[:7]:
        dashboard.store.complete(job.lease_ref(), '"sent"')
    for job in ran[7:]:  # failed once, then again for good: two starts on the timeline
        dashboard.store.fail(job.lease_ref(), "SMTP 421: try again", retry_at=ran[0].run_at)
    for job in claim(dashboard.store, "emails", 2):
        dashboard.store.fail(job.lease_ref(), SMTP_ERROR, retry_at=None)
    job_id = ran[7].id
    for n in range(3):
        app.enqueue("payment", {"order_id": f"A-{100 + n}", "amount": 1200 + n}, queue="payments")
    app.configure_queue("payments", concurrency=2, rate_limit="10/s", key_concurrency=1)
    app.enqueue("print", {"message": "weekly digest"}, queue="reports")
    app.pause_queue("reports")
    worker = _start_worker(dashboard, "reports", tmp_path)  # paused: it takes no job
    try:
        with dashboard.server.client() as client:
            wait_until(lambda: client.get("/workers").json()["workers"], message="no worker")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shots = {
            "overview": "/",
            "queues": "/dashboard/queues",
            "workers": "/dashboard/workers",
            "jobs": "/dashboard/jobs",
            "job": f"/dashboard/jobs/{job_id}",
        }
        for size, viewport in (("wide", WIDE), ("narrow", {"width": 390, "height": 844})):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            for name, path in shots.items():
                open_page(page, dashboard.base + path)
                if name == "workers":
                    expect(page.locator("#workers tbody tr").first).to_be_visible()
                page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png", full_page=True)
            context.close()
    finally:
        _kill(worker)


# -- workers --------------------------------------------------------------------------------------
def _start_worker(dashboard: Dashboard, queue: str, logdir: Path) -> subprocess.Popen[bytes]:
    conveyor = str(Path(sys.executable).with_name("conveyor"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN")}
    with (logdir / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [
                conveyor,
                "worker",
                "--app",
                "tests.support.apps:app",
                "--database-url",
                dashboard.url,
                "--queues",
                queue,  # never another test's jobs
                "--lease",
                "1",
            ],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_a_killed_worker_leaves_the_workers_page(dashboard, page, names, tmp_path):
    worker = _start_worker(dashboard, names("w"), tmp_path)
    try:
        open_page(page, dashboard.base + "/dashboard/workers")
        row = page.locator("#workers tbody tr").filter(
            has=page.locator("td.num", has_text=re.compile(rf"^{worker.pid}$"))
        )
        expect(row).to_have_count(1, timeout=20_000)
        expect(row).to_contain_text("0 / ")  # slots busy / total
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        # gone within two lease periods (1 s each) and a refresh, without a reload
        expect(row).to_have_count(0, timeout=10_000)
    finally:
        _kill(worker)

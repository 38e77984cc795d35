"""The dashboard's pages over plain HTTP, on both stores: what they carry (assets from this
server only, the page token, escaped filters), the API token, and cross-site requests to
every state-changing route being refused without changing anything."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx

from conveyor.api.security import PAGE_TOKEN_COOKIE, PAGE_TOKEN_HEADER
from conveyor.jobs import JobFilter
from tests.api.test_cross_site import EVIL, state_changing_routes
from tests.dashboard.conftest import PAGES, TOKEN, XSS, failed_jobs

ASSETS = ["/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, not an address anything is fetched from


def _page_token(html: str) -> str:
    found = re.search(r'<meta name="conveyor-csrf" content="([^"]+)">', html)
    assert found, html[:500]
    return found.group(1)


def test_pages_and_assets_come_from_this_server_only(dashboard):
    with httpx.Client(base_url=dashboard.base) as client:
        for path in [*PAGES, "/dashboard/jobs/1"]:
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert "http://" not in page.text and "https://" not in page.text, path
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["cache-control"] == "no-store"
            cookie = page.headers["set-cookie"]
            assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
            # the page's token is the cookie's, and stays the same for the browser's next page
            assert _page_token(page.text) == client.cookies[PAGE_TOKEN_COOKIE]
        for asset in ASSETS:
            response = client.get(asset)
            assert response.status_code == 200, asset
            text = response.text.replace(SVG_NAMESPACE, "")
            assert "http://" not in text and "https://" not in text, asset
        assert client.get("/dashboard/static/nothing.js").status_code == 404
        assert client.get("/dashboard/jobs/not-a-number").status_code == 422


def test_the_filter_typed_in_the_address_comes_back_escaped(dashboard):
    with httpx.Client(base_url=dashboard.base) as client:
        html = client.get("/dashboard/jobs", params={"queue": XSS, "type": '"><b>x'}).text
    assert XSS not in html and "<b>x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert 'value="&#34;&gt;&lt;b&gt;x"' in html


def _snapshot(dashboard: Any) -> list[dict[str, Any]]:
    jobs = [job.to_json() for job in dashboard.store.list_jobs(JobFilter(limit=1000))]
    return jobs + [queue.to_json() for queue in dashboard.store.list_queues()]


def _requests(dashboard: Any, queue: str, job_ids: dict[str, int]) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) for every state-changing route, on this test's jobs."""
    bodies = {
        "/jobs": {"type": "reverse", "queue": queue},
        "/jobs/batch": {"jobs": [{"type": "reverse", "queue": queue}]},
        "/jobs/retry": {"status": "failed", "queue": queue},
        "/jobs/cancel": {"status": "pending", "queue": queue},
        "/queues/{name:queue}": {"concurrency": 1},
    }
    found = []
    for method, template in state_changing_routes(dashboard.server.server.config.app):
        paths = (
            [template.replace("{job_id}", str(i)) for i in job_ids.values()]
            if "{job_id}" in template
            else [template.replace("{name:queue}", queue)]
        )
        found += [(method, path, bodies.get(template)) for path in paths]
    return found


def test_cross_site_requests_to_every_state_changing_route_change_nothing(dashboard, names):
    queue = names("xsite")
    pending = dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    (failed,) = failed_jobs(dashboard, queue, 1)
    requests = _requests(dashboard, queue, {"pending": pending.id, "failed": failed.id})
    assert {path for _, path, _ in requests} >= {
        "/jobs",
        f"/jobs/{pending.id}/cancel",
        f"/jobs/{failed.id}/retry",
        "/jobs/retry",
        "/jobs/cancel",
        f"/queues/{queue}",
        f"/queues/{queue}/pause",
        f"/queues/{queue}/resume",
    }
    before = _snapshot(dashboard)
    with httpx.Client(base_url=dashboard.base) as client:
        token = _page_token(client.get("/").text)  # the browser has the page and its cookie
        refused = [
            {"Origin": EVIL},  # another site's page, even with the token it cannot read
            {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", PAGE_TOKEN_HEADER: token},
            {"Sec-Fetch-Site": "same-origin", PAGE_TOKEN_HEADER: "forged"},  # a stale page
            {},  # the cookie alone, from a browser that says nothing about the origin
        ]
        for method, path, body in requests:
            for headers in refused:
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 403, (method, path, headers, response.text)
                assert "refused" in response.json()["detail"]
        # the token without its cookie is refused too
        client.cookies.clear()
        response = client.post(f"/jobs/{pending.id}/cancel", headers={PAGE_TOKEN_HEADER: token})
        assert response.status_code == 403, response.text
    assert _snapshot(dashboard) == before, "a refused request changed stored data"


def test_the_pages_own_token_and_clients_without_a_browser_pass(dashboard, names):
    queue = names("own")
    first = dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    second = dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    with httpx.Client(base_url=dashboard.base) as browser:
        token = _page_token(browser.get("/dashboard/queues").text)
        own = {"Origin": dashboard.base, "Sec-Fetch-Site": "same-origin", PAGE_TOKEN_HEADER: token}
        assert browser.post(f"/queues/{queue}/pause", headers=own).json()["paused"] is True
        assert browser.post(f"/jobs/{first.id}/cancel", headers=own).status_code == 200
    with httpx.Client(base_url=dashboard.base) as curl:  # no cookie, no Origin: as before
        assert curl.post(f"/queues/{queue}/resume").json()["paused"] is False
        assert curl.post(f"/jobs/{second.id}/cancel").status_code == 200
    assert dashboard.store.get_job(first.id).status == "cancelled"


def test_with_a_token_pages_hold_nothing_but_the_form(dashboard, secured, names):
    queue = names("hidden")
    dashboard.conveyor.enqueue("reverse", "x", queue=queue)
    with httpx.Client(base_url=secured.url) as client:
        for path in [*PAGES, "/dashboard/jobs/1"]:
            page = client.get(path, headers={"Accept": "text/html"})
            assert page.status_code == 401, path
            assert page.headers["www-authenticate"] == "Bearer"  # no browser login prompt
            assert 'id="login-form"' in page.text
            assert '<meta name="conveyor-auth" content="required">' in page.text
            assert queue not in page.text
        for asset in ASSETS:
            assert client.get(asset).status_code == 200
        for data in ("/overview", "/queues", "/jobs", "/workers", "/periodic"):
            assert client.get(data).status_code == 401, data
        # credentials the browser sends by itself (Basic, from its own prompt) open it
        basic = {"Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()}
        page = client.get("/", headers=basic)
        assert page.status_code == 200
        assert '<meta name="conveyor-auth" content="given">' in page.text
        # pages take no other method without the token
        client.cookies.clear()
        assert client.post("/", json={}).status_code == 401

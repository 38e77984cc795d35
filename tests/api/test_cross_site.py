"""Browsers turned against the API (issue 12): cross-site state changes (403), non-JSON
bodies (415), foreign Host names (400), framing headers, an empty API_TOKEN and the
startup warnings of a server reachable from the network. Real servers on both stores."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conveyor.api import create_app
from conveyor.api.security import SAFE_METHODS
from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.jobs import JobFilter
from conveyor.metrics import Metrics
from conveyor.stores import Store
from tests.api.servers import _SETTING_VARS, ThreadedApi, api_settings

TOKEN = "cs-t0ken-Zq9"  # noqa: S105
EVIL = "http://evil.example"

# What a browser sends with a request from another site's page. Each one alone is enough.
FOREIGN: dict[str, dict[str, str]] = {
    "origin": {"Origin": EVIL},
    "origin+fetch-site": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    "fetch-site-cross-site": {"Sec-Fetch-Site": "cross-site"},
    "fetch-site-same-site": {"Origin": "http://a.example", "Sec-Fetch-Site": "same-site"},
    "origin-null": {"Origin": "null"},
    "origin-other-port": {"Origin": "http://127.0.0.1:1"},
    "origin-other-scheme": {"Origin": "https://{host}"},
    "origin-malformed": {"Origin": "not a url"},
}
# The bodies an HTML form (or a bare fetch from another page) can send without CORS.
FORM_BODIES: dict[str, tuple[str, bytes]] = {
    "urlencoded": ("application/x-www-form-urlencoded", b"type=reverse&payload=x"),
    "multipart": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="type"\r\n\r\nreverse\r\n--b--\r\n',
    ),
    "text-plain-json": ("text/plain", b'{"type": "reverse", "jobs": [{"type": "reverse"}]}'),
}


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _snapshot(store: Store) -> list[dict[str, Any]]:
    jobs = [job.to_json() for job in store.list_jobs(JobFilter(limit=1000))]
    return jobs + [queue.to_json() for queue in store.list_queues()]  # and queue settings


def state_changing_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route that is not GET/HEAD/OPTIONS, read from the app itself,
    so a route added later is covered by these tests without editing them."""
    try:  # recent FastAPI keeps an included router whole in app.routes
        from fastapi.routing import iter_route_contexts

        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method not in SAFE_METHODS:
                found.add((method, route.path))
    return sorted(found)


def _paths(path: str, job_ids: list[int]) -> list[str]:
    """Concrete paths for a route template: every job id for {job_id}, "default" otherwise."""
    if "{job_id}" in path:
        paths = [path.replace("{job_id}", str(job_id)) for job_id in job_ids]
    else:
        paths = [path]
    return [re.sub(r"\{[^}]+\}", "default", p) for p in paths]


def _seed(conveyor: Conveyor) -> list[int]:
    """A pending job (cancel would change it) and a cancelled one (retry would)."""
    pending = conveyor.enqueue("reverse", "a")
    cancelled = conveyor.enqueue("reverse", "b")
    conveyor.store.cancel(cancelled.id)
    return [pending.id, cancelled.id]


def _host(server: ThreadedApi) -> str:
    return urlsplit(server.url).netloc


@pytest.fixture(params=[TOKEN, None], ids=["token", "no-token"])
def token(request) -> str | None:
    return request.param


@pytest.fixture
def server(token, conveyor) -> Iterator[ThreadedApi]:
    """A live server with API_TOKEN set, and one without."""
    with ThreadedApi(conveyor, api_settings(api_token=token)) as live:
        yield live


# -- 403: cross-site state changes -------------------------------------------------------------
def test_every_state_changing_route_is_enumerated(conveyor, settings):
    routes = state_changing_routes(create_app(conveyor, settings, Metrics()))
    assert set(routes) >= {
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/jobs/{job_id}/retry"),
        ("POST", "/jobs/cancel"),  # bulk actions over a filter (SPEC §8)
        ("POST", "/jobs/retry"),
    }


def test_cross_site_form_posts_are_refused_and_change_nothing(server, conveyor, store):
    job_ids = _seed(conveyor)
    before = _snapshot(store)
    routes = state_changing_routes(server.server.config.app)
    credentials = _basic(TOKEN)  # what the browser attaches once the user logged in
    refused = 0
    with server.client() as client:
        for method, template in routes:
            for path in _paths(template, job_ids):
                for name, foreign in FOREIGN.items():
                    headers = {k: v.format(host=_host(server)) for k, v in foreign.items()}
                    for content_type, body in FORM_BODIES.values():
                        response = client.request(
                            method,
                            path,
                            content=body,
                            headers={**headers, **credentials, "Content-Type": content_type},
                        )
                        assert response.status_code == 403, (method, path, name, response.text)
                        assert "cross-site request refused" in response.json()["detail"]
                        refused += 1
                    # JSON or an empty body does not make it acceptable either
                    for body in (b'{"type": "reverse", "jobs": [{"type": "reverse"}]}', b""):
                        response = client.request(
                            method,
                            path,
                            content=body,
                            headers={**headers, **credentials, "Content-Type": "application/json"},
                        )
                        assert response.status_code == 403, (method, path, name, response.text)
    assert refused >= 4 * len(FOREIGN) * len(FORM_BODIES)
    assert _snapshot(store) == before, "a refused request changed stored jobs"


def test_the_message_says_why_and_what_to_do(server, token):
    with server.client() as client:
        refused = client.post("/jobs", json={"type": "reverse"}, headers={"Origin": EVIL})
        detail = refused.json()["detail"]
        assert f"Origin '{EVIL}' is not this server's origin {server.url}" in detail
        if token:
            assert "needs Authorization: Bearer <API_TOKEN>" in detail
        else:
            assert "requests from other sites cannot change anything" in detail
        site = client.post("/jobs", json={}, headers={"Sec-Fetch-Site": "cross-site"})
        assert "Sec-Fetch-Site: cross-site" in site.json()["detail"]


def test_a_valid_bearer_token_exempts_a_cross_site_request(conveyor, store):
    cross = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    with ThreadedApi(conveyor, api_settings(api_token=TOKEN)) as live, live.client() as client:
        headers = {**cross, **_bearer()}
        created = client.post("/jobs", json={"type": "reverse", "payload": "x"}, headers=headers)
        assert created.status_code == 201, created.text
        batch = client.post("/jobs/batch", json={"jobs": [{"type": "reverse"}]}, headers=headers)
        assert batch.status_code == 201, batch.text
        job_id = created.json()["id"]
        assert client.post(f"/jobs/{job_id}/cancel", headers=headers).json()["status"] == (
            "cancelled"
        )
        assert client.post(f"/jobs/{job_id}/retry", headers=headers).json()["status"] == "pending"
        bulk = client.post("/jobs/cancel", json={"status": "pending"}, headers=headers)
        assert bulk.json() == {"count": 2}, bulk.text  # the job and the batch's job
        assert store.get_job(job_id).status == "cancelled"

        before = _snapshot(store)
        # a form body is still not JSON: 415, whoever sends it
        for content_type, body in FORM_BODIES.values():
            response = client.post(
                f"/jobs/{job_id}/cancel",
                content=body,
                headers={**headers, "Content-Type": content_type},
            )
            assert response.status_code == 415, response.text
        # Basic credentials, a wrong bearer token or both: refused
        for refused in (_basic(TOKEN), _bearer("wrong"), {"Authorization": f"Bearer {TOKEN}x"}):
            response = client.post(f"/jobs/{job_id}/cancel", headers={**cross, **refused})
            assert response.status_code == 403, (refused, response.text)
        assert _snapshot(store) == before


def test_without_a_token_no_bearer_header_exempts_anything(live, conveyor, store):
    job_id = conveyor.enqueue("reverse").id
    with live.client() as client:
        response = client.post(
            f"/jobs/{job_id}/cancel", headers={"Origin": EVIL, **_bearer("anything")}
        )
        assert response.status_code == 403
        assert "cannot change anything" in response.json()["detail"]
    assert store.get_job(job_id).status == "pending"


def test_same_origin_browser_requests_work(server, conveyor, store):
    own = server.url  # http://127.0.0.1:<port>, the origin the page was loaded from
    port = urlsplit(own).port
    login = _basic(TOKEN)  # harmless without a token
    same_origin = [
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Origin": own},  # a browser that does not send Sec-Fetch-Site
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar, a bookmark
        # the page was loaded as http://localhost:<port>: its Host says so too
        {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
    ]
    with server.client() as client:
        for headers in same_origin:
            headers = {**headers, **login}
            created = client.post("/jobs", json={"type": "reverse"}, headers=headers)
            assert created.status_code == 201, (headers, created.text)
            job_id = created.json()["id"]
            batch = client.post("/jobs/batch", json={"jobs": [{"type": "print"}]}, headers=headers)
            assert batch.status_code == 201, (headers, batch.text)
            # an empty body, whatever its Content-Type, is fine on cancel and retry
            cancel = client.post(
                f"/jobs/{job_id}/cancel",
                content=b"",
                headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert cancel.status_code == 200, (headers, cancel.text)
            retry = client.post(f"/jobs/{job_id}/retry", json=None, headers=headers)
            assert retry.status_code == 200, (headers, retry.text)
            assert store.get_job(job_id).status == "pending"


def test_sec_fetch_site_is_the_browsers_own_verdict(live):
    # A browser that says same-origin is believed even when Origin does not match the Host
    # it reached (a proxy that rewrites Host); pages cannot set Sec-Fetch-Site.
    with live.client() as client:
        headers = {"Origin": "https://jobs.example.com", "Sec-Fetch-Site": "same-origin"}
        assert client.post("/jobs", json={"type": "reverse"}, headers=headers).status_code == 201


def test_clients_without_browser_headers_work_as_before(server):
    with server.client(headers=_bearer()) as client:  # ignored without a token
        created = client.post("/jobs", json={"type": "reverse", "payload": "x"})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        assert client.post(f"/jobs/{job_id}/retry").json()["status"] == "pending"
        ok = client.post(
            "/jobs/batch",
            content=b'{"jobs": [{"type": "reverse"}]}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert ok.status_code == 201
        assert len(client.get("/jobs").json()["jobs"]) == 2


# -- 415: bodies are JSON or empty ---------------------------------------------------------------
@pytest.mark.parametrize(("content_type", "body"), FORM_BODIES.values(), ids=FORM_BODIES.keys())
def test_non_json_bodies_are_415_and_change_nothing(live, conveyor, store, content_type, body):
    job_ids = _seed(conveyor)
    before = _snapshot(store)
    with live.client() as client:  # no Origin: not even a browser
        for method, template in state_changing_routes(live.server.config.app):
            for path in _paths(template, job_ids):
                response = client.request(
                    method, path, content=body, headers={"Content-Type": content_type}
                )
                assert response.status_code == 415, (path, response.text)
                assert "application/json" in response.json()["detail"]
    assert _snapshot(store) == before


def test_text_plain_json_is_refused_but_json_types_are_accepted(live, count_jobs):
    body = b'{"type": "reverse", "payload": "x"}'
    with live.client() as client:
        plain = client.post("/jobs", content=body, headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        assert "'text/plain'" in plain.json()["detail"]
        assert count_jobs() == 0
        for content_type in ("application/json", "Application/JSON; charset=UTF-8"):
            response = client.post("/jobs", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 201, content_type
    assert count_jobs() == 2


def test_openapi_documents_403_and_415(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/jobs",
        "/jobs/batch",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry",
        "/jobs/cancel",
        "/jobs/retry",
    ):
        assert {"403", "415"} <= set(paths[path]["post"]["responses"]), path


# -- 400: Host names ---------------------------------------------------------------------------
def test_foreign_host_is_400_and_loopback_names_work(server, count_jobs):
    port = urlsplit(server.url).port
    with server.client(headers=_bearer()) as client:
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "127.0.0.1.evil.example",
            "localhostx",
        ):
            for method, path in (("GET", "/jobs"), ("GET", "/"), ("POST", "/jobs")):
                response = client.request(
                    method, path, json={"type": "reverse"}, headers={"Host": host}
                )
                assert response.status_code == 400, (host, path, response.text)
                assert "--allowed-hosts" in response.json()["detail"]
            # orchestrators' probes pass, whatever Host they send
            assert client.get("/healthz", headers={"Host": host}).status_code == 200
            assert client.get("/readyz", headers={"Host": host}).status_code == 200
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "localhost",
            "LOCALHOST.",
            f"[::1]:{port}",
            f"10.1.2.3:{port}",  # an address: DNS rebinding needs a name
        ):
            assert client.get("/jobs", headers={"Host": host}).status_code == 200, host
    assert count_jobs() == 0


def test_allowed_hosts_patterns(conveyor):
    settings = api_settings(allowed_hosts=" jobs.example, .corp.example,*.sub.example ")
    with ThreadedApi(conveyor, settings) as live, live.client() as client:

        def status(host: str) -> int:
            return client.get("/jobs", headers={"Host": host}).status_code

        for host in ("jobs.example", "JOBS.example:8080", "corp.example", "a.b.corp.example"):
            assert status(host) == 200, host
        for host in ("a.sub.example", "localhost", "127.0.0.1"):
            assert status(host) == 200, host
        for host in ("sub.example", "xcorp.example", "jobs.example.evil", "evil.example"):
            assert status(host) == 400, host
    # the policy follows the bind address (ThreadedApi itself listens on 127.0.0.1)
    for settings, name_status in (
        (api_settings(allowed_hosts="*"), 200),
        (api_settings(host="0.0.0.0"), 200),  # unset on a network bind: any name (warned)
        (api_settings(host="0.0.0.0", allowed_hosts=""), 400),  # set but empty: no extra name
        (api_settings(host="jobs.internal"), 200),
        (api_settings(host="localhost"), 400),
    ):
        with ThreadedApi(conveyor, settings) as live, live.client() as client:
            status = client.get("/jobs", headers={"Host": "anything.example"}).status_code
            assert status == name_status, settings
            assert client.get("/jobs", headers={"Host": "192.0.2.1"}).status_code == 200
            assert client.get("/jobs", headers={"Host": "localhost"}).status_code == 200


@pytest.mark.parametrize("entry", ["http://jobs.example", "jobs.example:8080", "a b", "*", "/"])
def test_malformed_allowed_hosts_are_a_configuration_error(conveyor, entry):
    if entry == "*":
        create_app(conveyor, api_settings(allowed_hosts=entry), Metrics())  # fine
        return
    with pytest.raises(ConfigurationError, match="ALLOWED_HOSTS"):
        create_app(conveyor, api_settings(allowed_hosts=entry), Metrics())


# -- framing and sniffing ------------------------------------------------------------------------
def test_pages_cannot_be_framed_and_nothing_is_sniffed(server):
    with server.client(headers=_bearer()) as client:
        for path in ("/", "/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["x-frame-options"] == "DENY"
            # the dashboard's pages carry a stricter policy of their own (tests/dashboard)
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
        # /docs still loads its scripts from this server (no script-src policy in the way)
        for asset in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', client.get("/docs").text):
            assert client.get(asset).status_code == 200, asset
        responses = [
            client.get("/jobs"),
            client.get("/jobs", headers={"Host": "evil.example"}),  # 400
            client.post("/jobs", json={}, headers={"Origin": EVIL, "Authorization": ""}),  # 403
            client.post("/jobs", content=b"a=b", headers={"Content-Type": "text/plain"}),  # 415
        ]
        for response in responses:
            assert response.headers["x-content-type-options"] == "nosniff", response.status_code


# -- conveyor serve: --allowed-hosts, API_TOKEN="", warnings ----------------------------------
def _status(url: str, path: str, host: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.get(path, headers={"Host": host}).status_code


@pytest.mark.process
def test_serve_allowed_hosts_flag_and_environment(store_url, serve_process):
    flag = serve_process(store_url, "--workers", "0", "--allowed-hosts", "jobs.example")
    env = serve_process(store_url, "--workers", "0", env={"ALLOWED_HOSTS": ".corp.example"})
    for proc, allowed, refused in (
        (flag, "jobs.example", "corp.example"),
        (env, "a.corp.example", "jobs.example"),
    ):
        url = proc.wait_serving()
        assert _status(url, "/jobs", allowed) == 200
        assert _status(url, "/jobs", "localhost") == 200
        assert _status(url, "/jobs", refused) == 400
        assert _status(url, "/jobs", "evil.example") == 400
        assert _status(url, "/healthz", "evil.example") == 200
        log = proc.output()  # a loopback server: nothing to warn about
        assert "without API_TOKEN" not in log and "without --allowed-hosts" not in log


@pytest.mark.process
def test_serve_on_all_interfaces_without_token_warns(store_url, serve_process):
    proc = serve_process(store_url, "--workers", "0", "--host", "0.0.0.0")
    url = proc.wait_serving().replace("0.0.0.0", "127.0.0.1")
    log = proc.output()
    assert "serving on 0.0.0.0 without API_TOKEN: anyone who can reach this port" in log
    assert "serving on 0.0.0.0 without --allowed-hosts" in log
    # the documented default: any Host name is answered...
    assert _status(url, "/jobs", "jobs.internal") == 200
    with httpx.Client(base_url=url, timeout=30) as client:
        # ...but a cross-site state change is still refused
        response = client.post("/jobs", json={"type": "reverse"}, headers={"Origin": EVIL})
        assert response.status_code == 403
        assert client.get("/jobs").json()["jobs"] == []


@pytest.mark.process
def test_serve_on_all_interfaces_with_token_and_allowed_hosts_is_quiet(store_url, serve_process):
    proc = serve_process(
        store_url,
        "--workers",
        "0",
        "--host",
        "0.0.0.0",
        "--allowed-hosts",
        "jobs.internal",
        env={"API_TOKEN": TOKEN},
    )
    url = proc.wait_serving().replace("0.0.0.0", "127.0.0.1")
    log = proc.output()
    assert "without API_TOKEN" not in log and "without --allowed-hosts" not in log
    with httpx.Client(base_url=url, timeout=30, headers=_bearer()) as client:
        assert client.get("/jobs", headers={"Host": "jobs.internal:8080"}).status_code == 200
        assert client.get("/jobs", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.process
@pytest.mark.parametrize("where", ["env-empty", "env-blank", "dotenv-empty"])
def test_empty_api_token_refuses_to_start(tmp_path, where):
    database = tmp_path / "conveyor.db"  # the default store, in the working directory
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    if where == "env-empty":
        env["API_TOKEN"] = ""
    elif where == "env-blank":
        env["API_TOKEN"] = "  \t"
    else:
        (tmp_path / ".env").write_text("API_TOKEN=\n")
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: API_TOKEN is set but empty: give it a value, or unset it to serve without a token"
    ]
    assert "Conveyor serving" not in result.stdout + result.stderr
    assert not database.exists(), "refused before the store was opened"


def test_serve_help_documents_allowed_hosts_and_api_token():
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--allowed-hosts" in text
    assert "IP addresses and localhost are always accepted" in text
    assert "API_TOKEN that is set but empty is an error" in text

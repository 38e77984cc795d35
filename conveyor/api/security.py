"""Defences against a browser being turned against the API: foreign Host names (DNS
rebinding), cross-site state changes (CSRF), non-JSON bodies, and framing.

Each defence is pure ASGI middleware that answers from the request line and headers, in
front of the route (api/app.py's docstring gives their order):

- `TrustedHostMiddleware` (400): the `Host` header must name this server. DNS rebinding
  points an attacker's domain at 127.0.0.1, so a page on that domain reaches a local server
  as "same origin"; its requests carry the attacker's name as `Host`. Accepted: any IP
  address (a page reached by IP address is served by whatever listens there, this server:
  rebinding needs a DNS name), `localhost`, the `--host` name, and `ALLOWED_HOSTS`. Without
  `ALLOWED_HOSTS`, a server bound to anything but loopback accepts every name (it is
  already reachable from the network, by names we cannot guess; `conveyor serve` warns).
  The probes /healthz and /readyz are exempt: orchestrators send whatever `Host` they like.
- `CrossSiteMiddleware` (403): a state-changing request (any method but GET, HEAD,
  OPTIONS) that a browser marks as sent by another site. `Sec-Fetch-Site`, when present,
  is the browser's own verdict (pages cannot set it): `cross-site` and `same-site` are
  refused, `same-origin` and `none` (typed in the address bar) pass. Browsers that do not
  send it (before 2023) send `Origin`, which must equal this server's origin (scheme, host
  and port of the request; `Origin: null` is foreign). Requests with neither header are
  not from a browser page (curl, SDKs) and pass. The same model as Go's
  net/http.CrossOriginProtection. A valid `Authorization: Bearer <API_TOKEN>` exempts the
  request: a page cannot attach that header to a cross-site request without CORS, which
  this server never grants. HTTP Basic credentials do not exempt it: browsers attach
  those by themselves. With no API_TOKEN there is no valid bearer token, so cross-site
  state changes are always refused.
  The same middleware checks the dashboard's page token (double submit): each dashboard
  page carries a random token, also set as the `conveyor_csrf` cookie (SameSite=Strict,
  HttpOnly), and its script sends it as `X-CSRF-Token` with every state change. A request
  carrying that header must carry the matching cookie (403 otherwise: a stale or forged
  page). A request carrying any cookie but neither `Sec-Fetch-Site` nor `Origin` is a
  browser that gave no verdict on where the request comes from (some sent no `Origin` with
  a form POST before 2020; a cookie such as a login proxy's rides along): it must carry the
  token. Requests without cookies (curl, SDKs) and requests the browser marks as same-origin
  (the dashboard, /docs) are judged by the checks above alone.
- `JsonBodyMiddleware` (415): the body of a state-changing request is JSON
  (`application/json`, or `application/*+json`) or empty. HTML forms can only send
  urlencoded, multipart or text/plain bodies, so no form can reach a route.
- `SecurityHeadersMiddleware`: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
  and `Content-Security-Policy: frame-ancestors 'none'` on every response (no page of
  this server may be framed: no clickjacking of the dashboard or /docs).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message as MimeMessage
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.auth import PUBLIC_PATHS, bearer_matches
from conveyor.api.limits import replay_body
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_QUOTE_MAX = 100  # at most this much of a client's header is quoted back in a message
PAGE_TOKEN_HEADER = "X-CSRF-Token"  # noqa: S105 (a header name)
PAGE_TOKEN_COOKIE = "conveyor_csrf"  # noqa: S105 (a cookie name)


# -- Host names ----------------------------------------------------------------------------------
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    name = _normalise(host)
    address = _ip(name)
    return name in LOOPBACK_NAMES or (address is not None and address.is_loopback)


def _normalise(host: str) -> str:
    """Lower case, without IPv6 brackets and without the trailing dot of a rooted name."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".") if name not in (".", "") else name


def split_host(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` of a Host header (IPv6 in brackets) → (host, port); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        rest = ":" + port
    else:
        host, rest = value, ""  # a name, or an IPv6 address written without brackets
    if not rest:
        return _normalise(host), None
    if not rest.startswith(":") or not rest[1:].isdigit() or int(rest[1:]) > 65_535:
        return None
    return _normalise(host), int(rest[1:])


@dataclass(frozen=True)
class HostPolicy:
    """Which `Host` names the server answers (see the module docstring)."""

    any_host: bool
    names: frozenset[str]  # exact names
    suffixes: tuple[str, ...]  # ".example.com": any subdomain of example.com

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        return cls.build(settings.host, settings.allowed_hosts)

    @classmethod
    def build(cls, bind_host: str, allowed_hosts: str | None) -> HostPolicy:
        """The policy for a server bound to `bind_host`, given ALLOWED_HOSTS (None: unset).
        ConfigurationError for an entry that is not a host name or pattern."""
        bind = _normalise(bind_host)
        names = set(LOOPBACK_NAMES)
        if bind not in WILDCARD_BINDS:
            names.add(bind)
        if allowed_hosts is None:
            # Unset: loopback servers answer their loopback names only; a server bound to
            # the network answers whatever name it is reached by (serve warns about it).
            return cls(not is_loopback(bind), frozenset(names), ())
        suffixes: list[str] = []
        any_host = False
        for entry in (e.strip().lower() for e in allowed_hosts.split(",")):
            if not entry:
                continue
            if entry == "*":
                any_host = True
            elif entry.startswith("*."):  # subdomains only (Starlette's TrustedHost rule)
                suffixes.append(_pattern(entry[2:], entry))
            elif entry.startswith("."):  # the domain and its subdomains (Django's rule)
                domain = _pattern(entry[1:], entry)
                names.add(domain)
                suffixes.append(domain)
            else:
                names.add(_pattern(entry, entry))
        return cls(any_host, frozenset(names), tuple("." + s for s in suffixes))

    def allows(self, host: str) -> bool:
        """`host` is already split from its port and normalised (see `split_host`)."""
        return (
            self.any_host
            or _ip(host) is not None
            or host in self.names
            or any(host.endswith(suffix) for suffix in self.suffixes)
        )


def _pattern(name: str, entry: str) -> str:
    host = _normalise(name)
    if _ip(host) is None and not _HOST_NAME.fullmatch(host):
        raise ConfigurationError(
            f"ALLOWED_HOSTS: {entry!r} is not a host name (expected names like "
            "jobs.example.com, .example.com or *.example.com, without scheme or port)"
        )
    return host


def serve_warnings(settings: Settings) -> list[str]:
    """What `conveyor serve` warns about at startup: a server reachable from the network
    without a token, or answering any Host name."""
    if is_loopback(settings.host):
        return []
    where = settings.host or "all interfaces"
    warnings = []
    if not settings.api_token:
        warnings.append(
            f"serving on {where} without API_TOKEN: anyone who can reach this port can "
            "enqueue, cancel and retry jobs; set API_TOKEN, or bind --host 127.0.0.1"
        )
    if settings.allowed_hosts is None:
        warnings.append(
            f"serving on {where} without --allowed-hosts: requests for any Host name are "
            "answered (DNS rebinding); set --allowed-hosts (ALLOWED_HOSTS) to the names "
            "clients use, e.g. --allowed-hosts jobs.example.com"
        )
    return warnings


# -- headers -------------------------------------------------------------------------------------
def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _quote(value: str) -> str:
    return value if len(value) <= _QUOTE_MAX else value[:_QUOTE_MAX] + "…"


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


class TrustedHostMiddleware:
    """400 unless the `Host` header names this server (the probes are exempt)."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.policy.any_host or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        value = _header(scope, b"host")
        parsed = split_host(value) if value is not None else None
        if parsed is not None and self.policy.allows(parsed[0]):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if value is None else f"Host {_quote(value)!r}"
        await _refuse(
            scope,
            receive,
            send,
            400,
            f"{shown} is not a name this server answers to; "
            "the operator lists the allowed names with --allowed-hosts (ALLOWED_HOSTS)",
        )


def served_origin(scope: Scope) -> tuple[str, str, int]:
    """(scheme, host, port) this request was sent to: its scheme and `Host` header."""
    scheme = str(scope.get("scheme", "http")).lower()
    value = _header(scope, b"host")
    parsed = split_host(value) if value is not None else None
    if parsed is None:
        server = scope.get("server") or ("", None)
        host, port = _normalise(str(server[0])), server[1]
    else:
        host, port = parsed
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme, 80)


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an `Origin` header; None for `null` or anything malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, _normalise(parts.hostname), port if port is not None else _DEFAULT_PORTS[scheme]


def _origin_text(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if _DEFAULT_PORTS.get(scheme) == port else f":{port}")


def cross_site_reason(scope: Scope) -> str | None:
    """Why a browser marks this request as sent by another site; None when it does not."""
    site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
    if site in ("cross-site", "same-site"):
        return f"the browser sent it from another site (Sec-Fetch-Site: {site})"
    if site in ("same-origin", "none"):
        return None  # the browser's own verdict
    origin = _header(scope, b"origin")
    if origin is None:
        return None  # not sent by a web page
    own = served_origin(scope)
    if parse_origin(origin) == own:
        return None
    return f"Origin {_quote(origin.strip())!r} is not this server's origin {_origin_text(own)}"


def page_token_reason(scope: Scope) -> str | None:
    """Why a state change that is not cross-site fails the dashboard's page token check
    (see the module docstring); None when it passes."""
    sent = _header(scope, PAGE_TOKEN_HEADER.lower().encode())
    cookies = _header(scope, b"cookie")
    expected = cookie_parser(cookies).get(PAGE_TOKEN_COOKIE) if cookies else None
    if sent is not None:
        if expected and hmac.compare_digest(sent.strip().encode(), expected.encode()):
            return None
        return f"the page's {PAGE_TOKEN_HEADER} does not match its cookie: reload the page"
    verdict = _header(scope, b"sec-fetch-site") or _header(scope, b"origin")
    if cookies is not None and verdict is None:
        return (
            "a browser request without Origin or Sec-Fetch-Site must carry the page's "
            f"{PAGE_TOKEN_HEADER}"
        )
    return None


class CrossSiteMiddleware:
    """403 for a state-changing request a browser marks as cross-site, or that fails the
    dashboard's page token check, unless it carries a valid bearer token (never possible
    with no API_TOKEN configured)."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if self._token is not None and bearer_matches(scope["headers"], self._token):
            await self.app(scope, receive, send)
            return
        reason = cross_site_reason(scope)
        if reason is not None:
            remedy = (
                "a request from another site needs Authorization: Bearer <API_TOKEN>"
                if self._token is not None
                else "requests from other sites cannot change anything"
            )
            detail = f"cross-site request refused: {reason}; {remedy}"
            await _refuse(scope, receive, send, 403, detail)
            return
        reason = page_token_reason(scope)
        if reason is not None:
            await _refuse(scope, receive, send, 403, f"request refused: {reason}")
            return
        await self.app(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, with any parameters: what
    FastAPI parses as JSON."""
    if not content_type or not content_type.strip():
        return False
    mime = MimeMessage()
    mime["content-type"] = content_type
    subtype = mime.get_content_subtype()
    return mime.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class JsonBodyMiddleware:
    """415 for a state-changing request whose non-empty body is not declared as JSON.

    Runs inside BodyLimitMiddleware, which has already buffered the body (at most
    MAX_BODY_BYTES), so an empty body is told apart from a chunked one exactly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if is_json(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body:
            await self.app(scope, replay_body(body, receive), send)
            return
        given = f"not {_quote(content_type.strip())!r}" if content_type else "none was given"
        await _refuse(
            scope,
            receive,
            send,
            415,
            f"the request body must be JSON with Content-Type: application/json ({given})",
        )


# Every response: no MIME sniffing, never framed by another page (clickjacking).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, headers: Iterable[tuple[bytes, bytes]] = SECURITY_HEADERS):
        self.app = app
        self.headers = tuple(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

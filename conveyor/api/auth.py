"""API_TOKEN check, as ASGI middleware in front of everything else.

Being middleware rather than a route dependency, it answers 401 before the body is read
or validated, and covers every path (/docs, /openapi.json, the dashboard, unknown paths)
except the probes in PUBLIC_PATHS. The token is compared in constant time and never logged.

Clients send `Authorization: Bearer <token>` (SPEC §4). A browser cannot add that header to
a page it navigates to, so the token is also accepted as the password of HTTP Basic
credentials (any user name), and a 401 for a request that accepts HTML asks for Basic
credentials: the browser's own login prompt then opens /docs, and sends the credentials
again with the page's own requests. Because the browser attaches them by
itself, Basic credentials do not make a cross-site request acceptable (api/security.py).

The dashboard's pages and their scripts and styles are the exception: they hold no job
data (their script fetches it from the API with the token), so a GET of one without the
token is served, marked TOKEN_MISSING in the request's state; the page then answers 401 and
shows a form that asks for the token, which its script keeps for the browser tab and sends
as `Authorization: Bearer`.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from collections.abc import Callable

from fastapi.security import HTTPBearer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import ConfigurationError

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
TOKEN_MISSING = "conveyor_token_missing"  # noqa: S105 (request.state key: served tokenless)

# Declares the scheme in OpenAPI (the "Authorize" button of /docs); the middleware enforces it.
bearer_scheme = HTTPBearer(auto_error=False, description="API_TOKEN, when the server sets one")


def configured_token(value: str | None) -> str | None:
    """API_TOKEN as the server uses it: None when unset. Set but empty (or blanks only) is
    a ConfigurationError rather than "no authentication": `API_TOKEN=` in a .env or a
    deployment whose secret did not resolve must not open the API to everyone."""
    if value is not None and not value.strip():
        raise ConfigurationError(
            "API_TOKEN is set but empty: give it a value, or unset it to serve without a token"
        )
    return value


def token_matches(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    """True when an `Authorization` header carries exactly `token`: as a bearer token, or
    as the password of Basic credentials."""
    return _matches(headers, token, basic=True)


def bearer_matches(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    """True when an `Authorization: Bearer` header carries exactly `token`. Basic
    credentials do not count: a browser attaches those to any request by itself."""
    return _matches(headers, token, basic=False)


def _matches(headers: list[tuple[bytes, bytes]], token: bytes, *, basic: bool) -> bool:
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, credentials = value.strip().partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer" and hmac.compare_digest(credentials.strip(), token):
            return True
        if (
            basic
            and scheme == b"basic"
            and hmac.compare_digest(_basic_password(credentials), token)
        ):
            return True
    return False


def _basic_password(credentials: bytes) -> bytes:
    """The password of Basic credentials (base64 of `user:password`); b"" when malformed."""
    try:
        decoded = b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    _user, colon, password = decoded.partition(b":")
    return password if colon else b""


def _wants_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"accept" and b"text/html" in value for name, value in headers)


class BearerAuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, token: str, pages: Callable[[str], bool] = lambda path: False
    ) -> None:
        self.app = app
        self._token = token.encode("utf-8")
        self._pages = pages  # paths served without the token (the module docstring)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            or token_matches(scope["headers"], self._token)
        ):
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and self._pages(scope["path"]):
            scope.setdefault("state", {})[TOKEN_MISSING] = True
            await self.app(scope, receive, send)
            return
        # A browser shows its login prompt for a Basic challenge (any user name, the token
        # as password); API clients are told to send the bearer token.
        challenge = (
            'Basic realm="Conveyor", charset="UTF-8"' if _wants_html(scope["headers"]) else "Bearer"
        )
        response = JSONResponse(
            {"detail": "missing or invalid API token (Authorization: Bearer <API_TOKEN>)"},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)

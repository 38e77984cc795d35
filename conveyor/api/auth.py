"""Bearer-token check (API_TOKEN), as ASGI middleware in front of everything else.

Being middleware rather than a route dependency, it answers 401 before the body is read
or validated, and covers every path (/docs, /openapi.json, the dashboard, unknown paths)
except the probes in PUBLIC_PATHS. The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

# Declares the scheme in OpenAPI (the "Authorize" button of /docs); the middleware enforces it.
bearer_scheme = HTTPBearer(auto_error=False, description="API_TOKEN, when the server sets one")


def token_matches(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    """True when an `Authorization: Bearer <token>` header carries exactly `token`."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, credentials = value.strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token):
            return True
    return False


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            or token_matches(scope["headers"], self._token)
        ):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "missing or invalid bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

"""Running the API under uvicorn inside our own event loop (`conveyor serve`).

We bind the socket ourselves (a taken port fails before anything starts, with one line,
and port 0 works) and keep uvicorn's hands off signals: SIGTERM/SIGINT set our single
stop event, which stops HTTP and the worker pool together.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from conveyor.errors import ConfigurationError
from conveyor.settings import DEFAULT_SHUTDOWN_TIMEOUT


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ConfigurationError when that is impossible."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ApiServer(uvicorn.Server):
    """uvicorn.Server that leaves signal handling to its owner and reports when it listens."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                log_config=None,  # our logging setup (text/JSON) formats uvicorn's lines too
                lifespan="off",
                ws="none",
                server_header=False,
                timeout_graceful_shutdown=max(1, math.ceil(shutdown_timeout)),
            )
        )
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the owner's signal handler sets `should_exit` (uvicorn >= 0.29.1)

    def install_signal_handlers(self) -> None:
        """Older uvicorn versions install their handlers here; ours stay in place."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

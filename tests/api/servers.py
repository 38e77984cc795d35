"""Real HTTP servers for the API tests: uvicorn in a thread, or `conveyor serve` as a child."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from conveyor.api import create_app
from conveyor.api.server import ApiServer, bind_socket, socket_url
from conveyor.app import Conveyor
from conveyor.metrics import Metrics
from conveyor.settings import Settings
from tests.support.wait import wait_until

# Settings the environment must not leak into a test's server.
_SETTING_VARS = (
    "DATABASE_URL",
    "CONVEYOR_APP",
    "WORKER_COUNT",
    "FETCH_INTERVAL",
    "FETCH_LIMIT",
    "CONVEYOR_QUEUES",
    "LEASE_SECONDS",
    "SHUTDOWN_TIMEOUT",
    "HOST",
    "PORT",
    "API_TOKEN",
    "ALLOWED_HOSTS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "MAX_ATTEMPTS",
    "MAX_BODY_BYTES",
)


def api_settings(**given: Any) -> Settings:
    """Settings from `given` and defaults only (no .env; what the API reads is all given)."""
    values: dict[str, Any] = {
        "api_token": None,
        "allowed_hosts": None,
        "max_body_bytes": 1024 * 1024,
        **given,
    }
    return Settings(_env_file=None, **values)


def make_app(url: str, *, with_tasks: bool = True) -> Conveyor:
    """A Conveyor on `url`; with tasks, unknown types are refused (SPEC §4). `reverse`
    takes any payload: the API tests post every shape of payload with that type (payloads
    refused by a task's signature: tests/api/test_signature.py)."""
    app = Conveyor(url)
    if with_tasks:

        @app.task
        def reverse(*args: object, **kwargs: object) -> object:
            return args[0][::-1] if args and isinstance(args[0], str) else None

        @app.task(name="print")
        def print_message(message: str = "") -> None:
            return None

        @app.task(queue="payments", priority=3, max_attempts=7)
        def payment(order_id: str = "", amount: int = 0) -> None:
            return None

    return app


class ThreadedApi:
    """create_app(...) served by uvicorn on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, conveyor: Conveyor, settings: Settings, metrics: Metrics | None = None):
        self.conveyor = conveyor
        self.metrics = metrics or Metrics()
        self.sock = bind_socket("127.0.0.1", 0)
        self.url = socket_url(self.sock)
        self.server = ApiServer(create_app(conveyor, settings, self.metrics), shutdown_timeout=5)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="api", daemon=True
        )

    def __enter__(self) -> ThreadedApi:
        self.thread.start()
        wait_until(lambda: self.server.started, message="uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "uvicorn thread did not stop"
        self.sock.close()

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


_SERVING = re.compile(r"Conveyor serving on (http://\S+)")


class ServeProcess:
    """`python -m conveyor serve --port 0 ...` in a child process; its output goes to a file."""

    def __init__(self, tmp: Path, database_url: str, *args: str, env: dict[str, str] | None = None):
        self.log_path = tmp / f"serve-{len(list(tmp.glob('serve-*.log')))}.log"
        base = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "serve",
                "--port",
                "0",
                "--database-url",
                database_url,
                *args,
            ],
            cwd=tmp,
            env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = ""

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout: float = 30) -> str:
        def serving() -> str:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            found = _SERVING.search(self.output())
            return found.group(1) if found else ""

        self.url = wait_until(serving, timeout=timeout, message="serve did not start")
        return self.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        """Always reap the child: SIGTERM, then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

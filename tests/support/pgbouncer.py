"""PgBouncer for tests: Debian's `pgbouncer` in transaction mode at its default settings
(only `extra_float_digits` ignored among startup parameters), in front of the test server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.support import pg
from tests.support.procs import free_port

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Bouncer:
    port: int
    log: Path

    def url(self, direct_url: str, *, query: str = "") -> str:
        """`direct_url` (a URL of the test server) through this pooler, with `query`."""
        parts = urlsplit(direct_url)
        user = parts.username or "postgres"
        return urlunsplit((parts.scheme, f"{user}@127.0.0.1:{self.port}", parts.path, query, ""))


def _config(folder: Path, port: int) -> Path:
    server = urlsplit(pg.ADMIN_URL)
    user = server.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "max_client_conn = 500\n"
        "default_pool_size = 40\n"
    )
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the postgres user
    return ini


def _unavailable(reason: str) -> NoReturn:
    pg.unavailable(reason, tests="PgBouncer tests")


@contextmanager
def running_pgbouncer() -> Iterator[Bouncer]:
    """Start pgbouncer on a free port (as the postgres user when run as root: pgbouncer
    refuses root), wait until it serves, stop it at the end."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        _unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    folder = Path(tempfile.mkdtemp(prefix="conveyor-pgbouncer-"))
    port = free_port()
    ini = _config(folder, port)
    log = folder / "pgbouncer.log"
    command = [binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(ini)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        bouncer = Bouncer(port, log)
        _wait_until_serving(proc, bouncer)
        yield bouncer
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_serving(proc: subprocess.Popen[bytes], bouncer: Bouncer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = bouncer.url(pg.ADMIN_URL)
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _unavailable(f"pgbouncer exited with {proc.returncode}: {bouncer.log.read_text()}")
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            last = str(exc).strip()
        time.sleep(0.05)  # polling a starting server: nothing to wait on but a connection
    _unavailable(f"pgbouncer did not serve within {START_TIMEOUT_S:g}s: {last}")

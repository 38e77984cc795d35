"""Read-only database files for tests: `chattr +i`, which even root cannot write through
(root ignores permission bits, so chmod proves nothing here), always undone.

Only the database file and its -wal are made immutable, never the -shm: SQLite maps the
-shm into memory, and the kernel answers a write to a mapped page of an immutable file
with SIGBUS, which kills the process outright (ext4 refuses page_mkwrite on immutable
inodes). That is the kernel's doing, not a state a store can recover from."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() == "true"
CHATTR = shutil.which("chattr")


def _unavailable(directory: Path) -> str | None:
    if CHATTR is None:
        return "chattr is not installed"
    probe = directory / ".chattr-probe"
    probe.write_bytes(b"")
    try:
        done = subprocess.run(
            [CHATTR, "+i", str(probe)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            return f"chattr +i does not work in {directory}: {done.stderr.strip()}"
        try:
            with probe.open("ab"):
                pass
        except PermissionError:
            return None
        return f"chattr +i did not make {probe} read-only"
    finally:
        subprocess.run([CHATTR, "-i", str(probe)], capture_output=True, check=False)
        probe.unlink(missing_ok=True)


def require_chattr(directory: Path) -> None:
    """Skip loudly when files cannot be made immutable here; under CI=true, fail."""
    reason = _unavailable(directory)
    if reason is None:
        return
    reason = f"cannot make files read-only for this test: {reason} (needs root, ext4/xfs/btrfs)"
    if CI:
        pytest.fail(reason + " (CI=true: this sandbox capability is relied on)", pytrace=False)
    pytest.skip(reason)


def database_files(db: Path) -> list[Path]:
    """The files to freeze for a read-only database: the file and its -wal (not -shm)."""
    return [db, Path(f"{db}-wal")]


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """chattr +i on `paths` for the block; chattr -i on each of them however it ends."""
    assert CHATTR is not None
    frozen: list[Path] = []
    try:
        for path in paths:
            subprocess.run([CHATTR, "+i", str(path)], check=True, capture_output=True)
            frozen.append(path)
        yield
    finally:
        for path in frozen:
            subprocess.run([CHATTR, "-i", str(path)], check=False, capture_output=True)

"""The clock of SQLite lease deadlines.

Every process on the host compares lease deadlines (`jobs.lease_expires_at`) with one clock
that never steps: Linux's CLOCK_BOOTTIME, the time since boot (suspend included), shared by
every process of the machine and its containers. With the wall clock, a process whose clock
ran ahead, or a step of the machine's clock, saw live leases as expired and recovered jobs
that were still running. Wall time stays for everything users read (run_at, created_at, ...).

Boot-time deadlines mean nothing after a reboot, so the store records which boot wrote them
(the kernel's boot id) and expires them all when it changes. Where neither exists (macOS,
Windows) lease deadlines follow the wall clock, as they always did there.
"""

from __future__ import annotations

import time
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def boot_id() -> str | None:
    """This boot of the machine, or None where the host cannot tell (lease deadlines then
    follow the wall clock)."""
    if _BOOTTIME is None:
        return None
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


BOOT_ID = boot_id()


def wall_us() -> int:
    return time.time_ns() // 1000


def lease_us() -> int:
    """Now on the lease clock, in microseconds."""
    if BOOT_ID is None or _BOOTTIME is None:
        return wall_us()
    return time.clock_gettime_ns(_BOOTTIME) // 1000

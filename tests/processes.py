"""What this test process has open: the fork tests check no database file crosses."""

from __future__ import annotations

import contextlib
import os


def open_files(prefix: str) -> list[str]:
    """Files of this process whose path starts with ``prefix`` (db, -wal, -shm)."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [path for path in paths if path.startswith(prefix)]

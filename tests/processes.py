"""The fork tests' tools: what this process has open (no database file may cross a
fork) and a child that reports back to the test through a pipe."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any


def open_files(prefix: str) -> list[str]:
    """Files of this process whose path starts with ``prefix`` (db, -wal, -shm)."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [path for path in paths if path.startswith(prefix)]


def in_a_forked_child(child: Callable[[], Any]) -> tuple[int, Any]:
    """``(pid, what child() returned)``, ``child`` run in a forked process.

    The answer crosses a pipe as JSON; a child that raises answers ``None``. The
    child leaves with ``os._exit``, never through pytest's own exit.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, json.dumps(child()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return pid, json.loads(answer) if answer else None

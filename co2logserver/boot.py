"""A configuration that cannot work stops ``gunicorn co2logserver`` with one line.

gunicorn builds the app in each worker, not in the master (unless ``--preload``),
and prints a traceback for every worker that fails to boot; when two workers
exit with its "failed to boot" code, the master's own shutdown raises again and
prints a third. So the lazy ``application`` turns a :class:`ConfigError` into one
line and an exit the master understands: the first worker of a master to fail
prints the line and exits with gunicorn's ``WORKER_BOOT_ERROR`` (3), which halts
the master; its siblings exit quietly (0) while the master is already stopping.
Which worker is first is decided by a marker file named after the master in the
temporary directory; a marker is removed by the next failure once its master is
gone. With ``--preload`` (in the master) the line goes to stderr with exit status 1.
``create_app()`` itself keeps raising the exception, for callers that handle it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
from types import FrameType
from typing import Any, NoReturn

#: gunicorn's Arbiter.WORKER_BOOT_ERROR: the master halts instead of respawning.
WORKER_BOOT_ERROR = 3


def gunicorn_worker() -> Any | None:
    """The gunicorn worker whose boot is building the app, if any."""
    if "gunicorn.workers.base" not in sys.modules:
        return None
    from gunicorn.workers.base import Worker

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Worker):
            return candidate
        frame = frame.f_back
    return None


def process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), so a reused PID differs."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without sending one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_to_fail(master_pid: int) -> bool:
    """Whether this is the master's first worker to fail (a marker file says so)."""
    prefix = os.path.join(tempfile.gettempdir(), f"co2logserver-boot-{os.getuid()}-")
    for stale in glob.glob(prefix + "*"):
        pid = stale[len(prefix) :].split("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(stale)
    marker = f"{prefix}{master_pid}-{process_start(master_pid)}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True  # no temporary directory: better two lines than none
    return True


def refuse_to_start(error: Exception) -> NoReturn:
    """Stop the server with one line for ``error``; re-raise it outside gunicorn."""
    line = f"co2logserver: configuration error: {error}"
    if "gunicorn" not in sys.modules:
        raise error
    worker = gunicorn_worker()
    if worker is None:  # in the master: --preload
        sys.exit(line)
    if first_to_fail(worker.ppid):
        print(line, file=sys.stderr, flush=True)
        sys.exit(WORKER_BOOT_ERROR)
    sys.exit(0)

"""A background thread that belongs to one process: started on demand, and again
in a forked child.

The forwarder and the retention sweep each run one long loop per process. With
``gunicorn --preload`` the master builds the app and forks the workers, and a forked
child owns none of its parent's threads, so "is my thread running?" must ask about
*this* process, and the lock that keeps two request threads from starting two loops
must not be one the parent held at the moment it forked (the child would wait on it
for ever). Both rules live here, once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

_START_LOCK = [threading.Lock()]


def _fresh_lock_in_child() -> None:
    """Whichever parent thread held the start lock does not exist in the child."""
    _START_LOCK[0] = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


class ProcessThread:
    """One daemon thread running ``target`` in this process, until :meth:`stop`.

    ``target`` loops until :attr:`stop_event` is set. ``on_new_process`` runs (under
    the start lock, before the thread starts) whenever the thread starts in a
    process it has not run in yet, the first one included: where the loop takes a
    lease, the child must hold it under a name of its own, not its parent's.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[], None],
        on_new_process: Callable[[], None] | None = None,
    ):
        self.name, self.target, self.on_new_process = name, target, on_new_process
        #: Set to ask the loop to end; a fresh one for each start.
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def alive(self) -> bool:
        """Whether the thread runs in this process (a parent's thread does not)."""
        return (
            self._pid == os.getpid()
            and self._thread is not None
            and self._thread.is_alive()
        )

    def start(self) -> bool:
        """Start the thread unless it runs here already; whether it started now."""
        if self.alive():
            return False
        with _START_LOCK[0]:
            if self.alive():
                return False
            if self._pid != os.getpid() and self.on_new_process is not None:
                self.on_new_process()
            self.stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self.target, name=self.name, daemon=True
            )
            self._pid = os.getpid()
            self._thread.start()
        return True

    def stop(self, timeout: float) -> None:
        """Ask the loop to end and wait up to ``timeout`` seconds for it.

        Only this process's thread is waited for, and never by itself (a loop may
        stop itself).
        """
        self.stop_event.set()
        thread = self._thread
        if (
            thread is not None
            and self._pid == os.getpid()
            and thread is not threading.current_thread()
        ):
            thread.join(timeout)

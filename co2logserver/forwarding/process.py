"""The forwarders running in this process, stopped at exit.

With ``gunicorn --preload`` the master builds the app, so its forwarder thread runs
there and the master forks workers; each worker starts a thread of its own on its
first request (:class:`co2logserver.background.ProcessThread` owns that rule). What
fork() means for the database (no pooled connection and no transaction across it)
is the store's: :mod:`co2logserver.store.forks`.
"""

from __future__ import annotations

import atexit
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from co2logserver.forwarding.worker import OutboxForwarder

_RUNNING: weakref.WeakSet[OutboxForwarder] = weakref.WeakSet()
_HOOKS_INSTALLED = [False]


def running(forwarder: OutboxForwarder) -> None:
    """Note a forwarder whose thread runs, for the exit handler."""
    _RUNNING.add(forwarder)


def _stop_all() -> None:
    """At exit, let each forwarder finish its box and release its lease."""
    for forwarder in list(_RUNNING):
        forwarder.stop()


def install_process_hooks() -> None:
    """Register the exit handler once per process."""
    if _HOOKS_INSTALLED[0]:
        return
    atexit.register(_stop_all)
    _HOOKS_INSTALLED[0] = True

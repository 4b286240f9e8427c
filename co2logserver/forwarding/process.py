"""The forwarders running in this process: stop them at exit, restart after fork.

With ``gunicorn --preload`` the master builds the app, so its forwarder thread runs
there and the master forks workers. A forked child owns none of the parent's
threads: each forwarder starts its own on the child's first request. What fork()
means for the database (no pooled connection and no transaction across it) is the
store's: :mod:`co2logserver.store.forks`.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from co2logserver.forwarding.worker import OutboxForwarder

_RUNNING: weakref.WeakSet[OutboxForwarder] = weakref.WeakSet()
_LOCKS: dict[str, Any] = {"start": threading.Lock()}
_HOOKS_INSTALLED = [False]


def running(forwarder: OutboxForwarder) -> None:
    """Note a forwarder whose thread runs, for the fork and exit handlers."""
    _RUNNING.add(forwarder)


def start_lock() -> threading.Lock:
    """The lock that keeps two request threads from starting two forwarders."""
    return _LOCKS["start"]


def _after_fork_in_child() -> None:
    """A fresh start lock; the parent's threads are not the child's."""
    _LOCKS["start"] = threading.Lock()
    for forwarder in list(_RUNNING):
        forwarder.after_fork_in_child()


def _stop_all() -> None:
    """At exit, let each forwarder finish its box and release its lease."""
    for forwarder in list(_RUNNING):
        forwarder.stop()


def install_process_hooks() -> None:
    """Register the fork and exit handlers once per process."""
    if _HOOKS_INSTALLED[0]:
        return
    if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
        os.register_at_fork(after_in_child=_after_fork_in_child)
    atexit.register(_stop_all)
    _HOOKS_INSTALLED[0] = True

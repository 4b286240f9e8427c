"""The forwarders running in this process: stop them at exit, restart after fork.

With ``gunicorn --preload`` the master builds the app, so its forwarder thread runs
there and the master forks workers. An SQLite connection open across fork() breaks
SQLite's locking in the child (https://sqlite.org/howtocorrupt.html#_carrying_an_
open_database_connection_across_a_fork_): workers then wait for a lock forever.
So every forwarder transaction holds the fork guard (:func:`guarded`), and fork()
waits for it and closes the pooled connections first. A forked child owns none of
the parent's threads: each forwarder starts its own on the child's first request.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from co2logserver.forwarding.worker import OutboxForwarder

_RUNNING: weakref.WeakSet[OutboxForwarder] = weakref.WeakSet()
_LOCKS: dict[str, Any] = {"start": threading.Lock(), "fork": threading.RLock()}
_HOOKS_INSTALLED = [False]


def running(forwarder: OutboxForwarder) -> None:
    """Note a forwarder whose thread runs, for the fork and exit handlers."""
    _RUNNING.add(forwarder)


def start_lock() -> threading.Lock:
    """The lock that keeps two request threads from starting two forwarders."""
    return _LOCKS["start"]


@contextlib.contextmanager
def guarded(session: contextlib.AbstractContextManager) -> Iterator[Any]:
    """Enter a store transaction while no fork() may happen."""
    with _LOCKS["fork"], session as conn:
        yield conn


def _before_fork() -> None:
    """Wait for forwarder transactions to end; close the connections they pooled."""
    _LOCKS["fork"].acquire()
    for forwarder in list(_RUNNING):
        forwarder.store.dispose()


def _after_fork_in_parent() -> None:
    """Let the parent's forwarders use the database again."""
    _LOCKS["fork"].release()


def _after_fork_in_child() -> None:
    """Fresh locks; the parent's threads are not the child's."""
    _LOCKS["start"] = threading.Lock()
    _LOCKS["fork"] = threading.RLock()
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
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
    atexit.register(_stop_all)
    _HOOKS_INSTALLED[0] = True

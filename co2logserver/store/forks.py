"""Stores across fork(): no pooled connection crosses it, no transaction spans it.

With ``gunicorn --preload`` the master builds the app (and may run the forwarder
and the retention sweeper there) and then forks workers. An SQLite connection open
across fork() breaks SQLite's locking in the child
(https://sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_):
workers then wait for a lock forever. So every :class:`~co2logserver.store.Store`
is tracked here, fork() first waits for the background transactions that hold the
fork guard (:func:`guarded`) and closes every store's pooled connections, and the
child starts with a fresh guard.

Request threads do not take the guard: they run in workers, which do not fork.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from co2logserver.store import Store

_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
_GUARD: list[Any] = [threading.RLock()]
_HOOKED = [False]


def track(store: Store) -> None:
    """Dispose ``store``'s pool before every fork of this process."""
    _STORES.add(store)
    if not _HOOKED[0] and hasattr(os, "register_at_fork"):  # Windows does not fork
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
    _HOOKED[0] = True


@contextlib.contextmanager
def guarded(session: contextlib.AbstractContextManager) -> Iterator[Any]:
    """Enter a store transaction (or read) while no fork() may happen: what a
    background thread that may run in a forking process uses."""
    with _GUARD[0], session as conn:
        yield conn


def _before_fork() -> None:
    """Wait for guarded transactions to end; close every store's pooled connections."""
    _GUARD[0].acquire()
    for store in list(_STORES):
        store.dispose()


def _after_fork_in_parent() -> None:
    """Let the parent's background threads use the database again."""
    _GUARD[0].release()


def _after_fork_in_child() -> None:
    """A fresh guard: the parent's threads, which may wait on it, are not here."""
    _GUARD[0] = threading.RLock()

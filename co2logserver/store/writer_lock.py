"""Queue the SQLite writers of all processes in the kernel, not in SQLite's sleeps.

SQLite lets one writer at a time hold a database. A writer that finds the lock
taken sleeps in its busy handler (1, 2, 5, 10 … ms) and is not woken when the lock
is freed, although the holder needs about a millisecond: under several gunicorn
workers most of the waiting is those sleeps. An exclusive ``flock`` on a file beside
the database, taken before ``BEGIN IMMEDIATE`` and released after the commit, lets
the kernel hand the turn to the next writer at once.

The lock only orders writers; SQLite's own locking still keeps them correct, so a
file that cannot be opened (a read-only directory) or a process that writes without
it (the ``sqlite3`` shell) only costs speed. A process that dies releases its lock.
Where there is no ``flock`` (Windows), writers queue in SQLite alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]  # checked before every use

log = logging.getLogger(__name__)

#: Key of the lock file's descriptor in a pooled connection's ``info``.
INFO_KEY = "co2logserver_writer_lock"


def lock_path(database: str) -> str:
    """The lock file of an SQLite database file."""
    return database + "-writers"


def install(engine: Engine, database: str) -> None:
    """Give every pooled connection its own descriptor of the lock file.

    ``flock`` locks belong to an open file description, so each connection (each
    thread of a threaded server) must open the file itself to queue with the others.
    """
    if fcntl is None:
        return
    path = lock_path(database)

    @event.listens_for(engine, "connect")
    def open_lock(_dbapi_connection, record):
        try:
            record.info[INFO_KEY] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            log.info("SQLite writers queue in SQLite itself: %s", error.strerror)

    @event.listens_for(engine, "close")
    def close_lock(_dbapi_connection, record):
        descriptor = record.info.pop(INFO_KEY, None)
        if descriptor is not None:
            os.close(descriptor)


@contextmanager
def writer_turn(conn: Connection) -> Iterator[None]:
    """Hold the lock file exclusively while the block runs (a no-op without one)."""
    descriptor = conn.connection.info.get(INFO_KEY)
    if descriptor is None:
        yield
        return
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)

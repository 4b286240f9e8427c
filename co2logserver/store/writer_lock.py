"""Queue the SQLite writers of all processes on a lock file, not in SQLite's sleeps.

SQLite lets one writer at a time hold a database. A writer that finds the lock
taken sleeps in its busy handler (1, 2, 5, 10 … ms) and is not woken when the lock
is freed, although the holder needs about a millisecond: under several gunicorn
workers most of the waiting is those sleeps. An exclusive ``flock`` on a file beside
the database, taken before ``BEGIN IMMEDIATE`` and released after the commit, lets
the next writer take the turn as soon as it is free.

The lock only orders writers; SQLite's own locking still keeps them correct, so a
file that cannot be opened (a read-only directory) or a process that writes without
it (the ``sqlite3`` shell) only costs speed. A process that dies releases its lock.
Where there is no ``flock`` (Windows), writers queue in SQLite alone. The wait for
the turn and SQLite's busy timeout after it share one budget, so a write waits
``CO2LOGSERVER_SQLITE_BUSY_TIMEOUT`` in all, however many writers are ahead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event

from co2logserver.store import deadline

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]  # checked before every use

log = logging.getLogger(__name__)

#: Key of the lock file's descriptor in a pooled connection's ``info``.
INFO_KEY = "co2logserver_writer_lock"
#: Seconds between tries while another writer has the turn.
POLL_INTERVAL = 0.0002


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
    """Hold the lock file exclusively while the block runs (a no-op without one).

    The turn is awaited only as long as the thread's budget lasts
    (:mod:`co2logserver.store.deadline`), so a request queued behind a writer that
    itself waits (for a process that writes without the lock file, or one that is
    stopped) answers in time instead of adding the waits up.

    :raise sqlite3.OperationalError: "database is locked" when the turn does not
        come within the budget (the store answers 503).
    """
    descriptor = conn.connection.info.get(INFO_KEY)
    if descriptor is None:
        yield
        return
    seconds = deadline.remaining()
    if not take_turn(descriptor, seconds):
        raise sqlite3.OperationalError(
            f"database is locked: no writer's turn within {seconds:g} s"
        )
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def take_turn(descriptor: int, seconds: float | None) -> bool:
    """Lock ``descriptor`` within ``seconds`` (None: however long it takes).

    There is no ``flock`` with a timeout; polling every :data:`POLL_INTERVAL`
    hands the turn on about as fast as the kernel's queue does, since a writer
    holds it for about a millisecond.
    """
    if seconds is None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        return True
    ends = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= ends:
                return False
        time.sleep(POLL_INTERVAL)

"""Making the engine: a file path or URL to SQLAlchemy's, SQLite's pragmas and the
checks of its file before the first request, and what kind of outage an error is.

Apart from :class:`~co2logserver.store.Store` (transactions, schema) because these
decide how a connection is opened and named, once, not how it is used.
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from co2logserver.errors import ConfigError
from co2logserver.store import deadline, writer_lock

#: Key of a pooled SQLite connection's current busy timeout (ms) in its ``info``.
BUSY_KEY = "co2logserver_busy_ms"


def database_url(value: str) -> str:
    """Turn a file path into an SQLite URL and pick psycopg 3 for PostgreSQL."""
    if "://" not in value:
        return "sqlite:///" + os.path.abspath(value)
    url = make_url(value)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


#: Journal modes this process switched SQLite files from, by file (for the one
#: upgrade line of :meth:`Store.ensure_schema`).
SWITCHED_TO_WAL: dict[str, str] = {}


def enable_wal(cursor, timeout: float, path: str | None = None) -> None:
    """Put the database in WAL mode (kept in the file, so it is switched once).

    Switching needs the database to itself, and SQLite answers "database is locked"
    at once, without its busy handler, to workers that connect to a new file at the
    same moment; so they retry until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            before = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if before.lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
                if path:
                    SWITCHED_TO_WAL[path] = before.lower()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


#: How every SQLite database file begins (an empty file is one too).
SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(url: str) -> None:
    """Refuse, at start, a database file SQLite could never open or write.

    Without this a missing directory or a read-only mount only shows at the first
    request, as a 503 "retry later" that sensors would retry forever. SQLite also
    writes its journal and WAL files beside the database, so the directory must be
    writable too.

    :raise ConfigError: one line naming ``CO2LOGSERVER_DB``, the path and the OS error.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = os.path.abspath(database)
    directory = os.path.dirname(path)
    target = path
    try:
        if os.path.exists(path):
            with open(path, "r+b") as existing:
                header = existing.read(len(SQLITE_HEADER))
            if header and header != SQLITE_HEADER[: len(header)]:
                raise ConfigError(
                    f"CO2LOGSERVER_DB: {path} is not an SQLite database (its first "
                    "bytes are not 'SQLite format 3'); name a database file, or a "
                    "new path for an empty one"
                )
        target = directory
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"CO2LOGSERVER_DB: cannot write the SQLite database {path} "
            f"({target}: {reason})"
        ) from None


def busy_milliseconds(seconds: float) -> int:
    """SQLite's busy timeout for ``seconds`` (whole milliseconds, rounded up)."""
    return math.ceil(seconds * 1000)


def sqlite_engine(url: str, settings: Mapping[str, Any]) -> Engine:
    """An SQLite engine with WAL, a busy timeout and explicit transactions."""
    engine = create_engine(
        url,
        hide_parameters=True,  # values (SECRETs among them) never reach logs
        connect_args={
            "timeout": settings["CO2LOGSERVER_SQLITE_BUSY_TIMEOUT"],
            "check_same_thread": False,
        },
    )
    synchronous = settings["CO2LOGSERVER_SQLITE_SYNCHRONOUS"]
    busy_timeout = settings["CO2LOGSERVER_SQLITE_BUSY_TIMEOUT"]
    database = make_url(url).database

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so writers can take the
        # write lock up front (pysqlite would defer it to the first INSERT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        enable_wal(cursor, busy_timeout, database)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()
        record.info[BUSY_KEY] = busy_milliseconds(busy_timeout)

    @event.listens_for(engine, "begin")
    def begin(connection):
        # On the driver connection: a full SQLAlchemy execution per request costs
        # more than the BEGIN itself.
        immediate = connection.get_execution_options().get("write", False)
        fairy = connection.connection
        # SQLite waits only what is left of the budget (after the writers' turn).
        wait = busy_milliseconds(deadline.clamp(busy_timeout))
        if fairy.info.get(BUSY_KEY) != wait:
            fairy.driver_connection.execute(f"PRAGMA busy_timeout={wait}")
            fairy.info[BUSY_KEY] = wait
        fairy.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    if database and database != ":memory:":
        writer_lock.install(engine, database)
    return engine


#: Words of a driver's outage message, by the cause ``/metrics`` counts them under.
OUTAGE_KINDS = (
    ("locked", ("locked", "busy")),
    ("disk", ("disk", "read-only", "readonly", "no space")),
    ("timeout", ("timeout", "timed out")),
    (
        "unreachable",
        ("unable to open", "connect", "connection", "server closed", "terminating"),
    ),
)


def outage_kind(error: BaseException) -> str:
    """What kind of outage ``error`` is: locked, disk, timeout, unreachable, other."""
    text = outage_cause(error).lower()
    for kind, words in OUTAGE_KINDS:
        if any(word in text for word in words):
            return kind
    return "other"


def outage_cause(error: BaseException) -> str:
    """The driver's own words for an outage ("unable to open database file"...)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return text[0][:200] if text else type(cause).__name__

"""The store: one SQLAlchemy engine per app, one transaction per request.

SQLite is the embedded default (WAL, busy timeout, ``BEGIN IMMEDIATE`` for writers so
several gunicorn workers queue for the write lock instead of failing); PostgreSQL
works the same. Every store call has a time budget (:mod:`.deadline`; PostgreSQL's
bounds are in :mod:`.postgres`). Database failures leave here as
:class:`~co2logserver.store.errors.StorageUnavailable` (the web answers 503), never
as raw SQL errors.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, exc, inspect
from sqlalchemy.engine import make_url

from co2logserver.store import (
    deadline,
    doubt,
    forks,
    group_commit,
    rollups,
    schema,
    writer_lock,
)
from co2logserver.store.columns import DataTable
from co2logserver.store.engines import (  # noqa: F401  (outage_*: the interface)
    SWITCHED_TO_WAL,
    check_sqlite_file,
    database_url,
    outage_cause,
    outage_kind,
    sqlite_engine,
)
from co2logserver.store.errors import StorageUnavailable  # noqa: F401  (interface)
from co2logserver.store.marks import (  # noqa: F401  (the store's interface)
    AlreadyApplied,
    applying,
    forget_marks,
    mark_applied,
)
from co2logserver.store.migrate import (
    ADDED_SENSOR_COLUMNS,
    add_missing_sensor_columns,
    fill_list_tables,
)
from co2logserver.store.quantities import Quantities

log = logging.getLogger(__name__)

EXTENSION = "co2logserver"
#: Key of the PostgreSQL advisory lock held while creating tables.
SCHEMA_LOCK = 0x0C02_1065


#: Words of SQLite OperationalErrors that are not outages (see Store.is_outage).
NOT_AN_OUTAGE = ("no such table", "no such column", "has no column", "syntax error")


class Store:
    """Owns the engine and hands out transactions; knows nothing of HTTP."""

    def __init__(self, settings: Mapping[str, Any]):
        self.url = database_url(settings["CO2LOGSERVER_DB"])
        # Whole seconds, as Retry-After wants them (the setting may be "7" or 7.5).
        self.retry_after = math.ceil(float(settings["CO2LOGSERVER_RETRY_AFTER"]))
        if self.url.startswith("sqlite"):
            check_sqlite_file(self.url)
            self.engine = sqlite_engine(self.url, settings)
            #: Seconds a store call may wait in all (see store.deadline).
            self.timeout = float(settings["CO2LOGSERVER_SQLITE_BUSY_TIMEOUT"])
        else:
            from co2logserver.store.postgres import postgres_engine

            self.engine = postgres_engine(self.url, settings)
            self.timeout = float(settings["CO2LOGSERVER_DB_TIMEOUT"])
        forks.track(self)  # no pooled connection crosses a fork()
        self.dialect = self.engine.dialect.name
        dbapi = self.engine.dialect.loaded_dbapi
        #: What the database is down or locked looks like, from SQLAlchemy or from
        #: the driver's cursor (the hot paths run statements on it directly).
        self.outage_errors = (
            exc.OperationalError,
            exc.InterfaceError,
            dbapi.OperationalError,
            dbapi.InterfaceError,
        )
        self.data = DataTable(settings["CO2LOGSERVER_DATA_TABLE_NAME"], settings)
        self.quantities = Quantities()
        #: SUID -> verify.Credentials of the sensors this worker has seen: lets the
        #: spool verify signed posts while the database is away (SPEC §10).
        self.registrations: dict[str, Any] = {}
        #: The spool and its applier (co2logserver.spool, .applier), set by the app.
        self.spool: Any = None
        self.applier: Any = None
        #: Shares commits among the ingest requests of this process's threads
        #: (:mod:`.group_commit`); None when ``CO2LOGSERVER_GROUP_COMMIT`` is off.
        self.group = (
            group_commit.GroupCommitter(self)
            if settings.get("CO2LOGSERVER_GROUP_COMMIT", True)
            else None
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        #: Called with :func:`outage_kind` of every outage (``metrics`` counts them).
        self.on_outage: Callable[[str], None] | None = None

    def init_app(self, app) -> None:
        """Attach to ``app``; the schema is created on first use, not at import."""
        app.extensions[EXTENSION] = self

    def ensure_schema(self) -> None:
        """Create missing tables (never alters the 0.1.2 ``data`` table's rows)."""
        if self._schema_ready:
            return
        # Threads of a worker wait for the first one's schema transaction only as
        # long as their budget lasts, like for any other lock.
        left = deadline.remaining()
        if not self._schema_lock.acquire(timeout=-1 if left is None else left):
            raise self.unavailable(TimeoutError("timed out: the schema is being made"))
        try:
            self._create_schema()
        finally:
            self._schema_lock.release()

    def _create_schema(self) -> None:
        """The schema transaction (under the schema lock), when one is needed."""
        if self._schema_ready or self._schema_complete():
            self._schema_ready = True
            return
        with self._write() as conn:
            if self.dialect == "postgresql":
                # Workers start together; PostgreSQL's CREATE TABLE is not
                # "if not exists" across concurrent transactions, so take turns.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            before = set(inspect(conn).get_table_names())
            schema.metadata.create_all(conn)
            add_missing_sensor_columns(conn)
            self.data.ensure(conn)
            rollups.ensure(conn)
            fill_list_tables(conn, before, self.data.name, self.data.upload_time_column)
        self._schema_ready = True
        added = sorted(set(schema.metadata.tables) - before)
        if self.data.name in before and added:
            self.log_upgrade(added)

    def _schema_complete(self) -> bool:
        """Whether every table and column exists already, read without a write lock.

        A new worker then starts serving without waiting for the write lock, which
        an outside writer (a backup, the ``sqlite3`` shell) may hold for long.

        :raise StorageUnavailable: when the database cannot be reached.
        """
        try:
            with self._connect() as conn, conn.begin():
                inspector = inspect(conn)
                tables = set(inspector.get_table_names())
                if not set(schema.metadata.tables) <= tables:
                    return False
                if not inspector.has_table(self.data.name):
                    return False
                columns = {c["name"] for c in inspector.get_columns("sensors")}
                if not set(ADDED_SENSOR_COLUMNS) <= columns:
                    return False
                self.data.reflect(conn)
                if not rollups.is_built(conn):
                    rollups.warn_not_built()
                return True
        except self.outage_errors as error:
            if not self.is_outage(error):
                raise
            raise self.unavailable(error) from error

    def log_upgrade(self, added: list[str]) -> None:
        """One line for the first start on a database of co2logserver 0.1.2: what
        changed in the file (docs/deployment.rst, Upgrading, says the same)."""
        database = make_url(self.url).database or self.url
        switched = SWITCHED_TO_WAL.get(database)
        journal = (
            f"switched the file from {switched} to WAL journal mode (back up the "
            "-wal file with it), "
            if switched
            else ""
        )
        where = database if self.dialect == "sqlite" else "the PostgreSQL database"
        log.warning(
            "first start on the co2logserver 0.1.2 database %s: %sadded the tables "
            "%s; the %s table and its rows are unchanged",
            where,
            journal,
            ", ".join(added),
            self.data.name,
        )

    def unavailable(
        self, error: BaseException, in_doubt: int | None = None
    ) -> StorageUnavailable:
        """The 503 a client gets when the database is down or locked too long.

        The log line names the cause (the driver's message, never the statement or
        its values); whether "nothing was stored" is added is up to the web layer,
        which knows if the request was a write.
        """
        log.warning(
            "database unavailable: %s: %s", type(error).__name__, outage_cause(error)
        )
        if self.on_outage is not None:
            self.on_outage(outage_kind(error))
        return StorageUnavailable(
            "The database is unavailable right now; retry later.",
            retry_after=self.retry_after,
            in_doubt=in_doubt,
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error.

        Creating the schema (on first use) and the transaction share one budget.
        Inside :func:`.group_commit.joining` (the ingest requests) the block may
        share its transaction and commit with other threads' blocks, each in its
        own savepoint; it still ends only once its data is committed.

        :raise StorageUnavailable: 503 when the database cannot be reached or locked.
        """
        with deadline.budget(self.timeout):
            self.ensure_schema()
            if self.group is not None and group_commit.JOINING.get():
                with self.group.member() as conn:
                    yield conn
                    mark_applied(conn)
                return
            with self._write() as conn:
                yield conn
                mark_applied(conn)  # in a spool record's transaction (not the schema's)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """The write transaction itself, with database failures turned into 503.

        All its waits (checkout, the writers' turn, statements, commit) share one
        budget of :attr:`timeout`.
        """
        committing: int | None = None  # the id of a commit that may be in doubt
        try:
            with deadline.budget(self.timeout), self.engine.connect() as conn:
                conn.execution_options(write=True)
                try:
                    with writer_lock.writer_turn(conn), conn.begin():
                        yield conn
                        committing = doubt.id_before_commit(conn)
                finally:
                    doubt.forget(conn)
            self.data.settled(committed=True)
            self.quantities.settled(committed=True)
        except BaseException as error:
            # The transaction rolled back, and with it any column or quantity it
            # added.
            self.data.settled(committed=False)
            self.quantities.settled(committed=False)
            if self.is_outage(error):
                raise self.unavailable(error, committing) from error
            raise

    def is_outage(self, error: BaseException) -> bool:
        """Whether ``error`` means the database is away or locked, not a wrong query.

        SQLite reports both kinds as OperationalError; "no such table/column" and
        syntax errors are bugs or schema drift, never a reason to tell a sensor to
        retry later.
        """
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return True
        if not isinstance(error, self.outage_errors):
            return False
        text = str(error).lower()
        return not any(sign in text for sign in NOT_AN_OUTAGE)

    @contextmanager
    def reading(self, budget: float | None = None) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot on SQLite and PostgreSQL).

        :param budget: seconds the whole block may wait for the database (the
            health check's). Without it the checkout gets :attr:`timeout` and each
            later wait its own bound, so a long export streamed to a slow client
            is not cut off.
        :raise StorageUnavailable: 503 when the database cannot be reached.
        """
        try:
            with deadline.budget(budget):
                self.ensure_schema()
                with self._connect() as conn, conn.begin():
                    yield conn
        except self.outage_errors as error:
            if not self.is_outage(error):
                raise
            raise self.unavailable(error) from error

    def _connect(self) -> Connection:
        """A checked-out connection, pinged (and replaced if broken) within budget."""
        with deadline.budget(self.timeout):
            return self.engine.connect()

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown)."""
        self.engine.dispose()


def get_store(app) -> Store:
    """Return the store attached to ``app``."""
    return app.extensions[EXTENSION]

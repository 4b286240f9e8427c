"""Statements compiled once per dialect and run on the driver's cursor.

Building and compiling a Core statement, and SQLAlchemy's execution context around
it, cost more than the SQLite write it describes; ingest runs the same few
statements thousands of times per second. So the statements are written with
SQLAlchemy Core, compiled once per dialect, and executed on the DB-API cursor of
the connection's current transaction. Driver errors are left as they are: the
store turns the ones that mean "database unavailable" into a 503
(:attr:`co2logserver.store.Store.outage_errors`).

Nothing run here passes through SQLAlchemy's statement or parameter logging.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

from sqlalchemy import Boolean, Connection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Compiled(NamedTuple):
    """One dialect's SQL text, parameter order and row shape of a statement."""

    sql: str
    order: tuple[str, ...] | None
    row: Callable[[Sequence[Any]], Any] | None


def row_maker(statement: ClauseElement) -> Callable[[Sequence[Any]], Any] | None:
    """Build rows with attribute access; booleans read back as ``bool``.

    The drivers return every other column type of the schema (integers, floats,
    text) as SQLAlchemy would.
    """
    columns = getattr(statement, "selected_columns", None)
    if columns is None or not len(columns):
        return None
    # The fields are the statement's columns, known at run time only.
    shape = namedtuple("PreparedRow", [c.key for c in columns])  # type: ignore[misc]
    booleans = [i for i, c in enumerate(columns) if isinstance(c.type, Boolean)]

    def make(values: Sequence[Any]) -> Any:
        if booleans:
            values = list(values)
            for i in booleans:
                if values[i] is not None:
                    values[i] = bool(values[i])
        return shape._make(values)

    return make


class Prepared:
    """A Core statement whose compiled SQL is kept per dialect."""

    def __init__(self, statement: ClauseElement):
        self.statement = statement
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, conn: Connection) -> Compiled:
        """SQL text, the order of positional parameters, and the row builder."""
        name = conn.dialect.name
        if name not in self._compiled:
            # SELECT, INSERT, UPDATE and DELETE compile to an SQLCompiler.
            compiled = cast(SQLCompiler, self.statement.compile(dialect=conn.dialect))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            self._compiled[name] = Compiled(
                compiled.string, order, row_maker(self.statement)
            )
        return self._compiled[name]

    def _arguments(self, compiled: Compiled, params: Mapping[str, Any]) -> Any:
        if compiled.order is None:
            return params
        return tuple(params[k] for k in compiled.order)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row of a SELECT (attribute access by column name), or ``None``."""
        compiled = self.compiled(conn)
        with driver_cursor(conn) as cursor:
            cursor.execute(compiled.sql, self._arguments(compiled, params))
            values = cursor.fetchone()
        if values is None or compiled.row is None:
            return values
        return compiled.row(values)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement once; returns the driver's row count."""
        compiled = self.compiled(conn)
        with driver_cursor(conn) as cursor:
            cursor.execute(compiled.sql, self._arguments(compiled, params))
            return cursor.rowcount

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for each parameter mapping (the driver's executemany)."""
        compiled = self.compiled(conn)
        with driver_cursor(conn) as cursor:
            cursor.executemany(
                compiled.sql, [self._arguments(compiled, row) for row in rows]
            )


@contextmanager
def driver_cursor(conn: Connection) -> Iterator[Any]:
    """A DB-API cursor in the connection's current transaction, closed afterwards."""
    cursor = conn.connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """Run driver SQL with positional parameters; return its rows (or ``[]``)."""
    with driver_cursor(conn) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def driver_execute_many(
    conn: Connection, sql: str, rows: Sequence[Sequence[Any]]
) -> None:
    """The driver's executemany of SQL with positional parameters."""
    with driver_cursor(conn) as cursor:
        cursor.executemany(sql, rows)


def placeholders(conn: Connection, count: int) -> str:
    """``count`` positional placeholders of the connection's driver, comma-joined."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)

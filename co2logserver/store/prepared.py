"""Statements compiled once per dialect and run as driver SQL on the hot path.

Building and compiling a Core statement costs more than the SQLite write it
describes; ingest runs the same few statements thousands of times per second, so it
keeps their compiled text. Statements are still written with SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult
from sqlalchemy.sql import Executable


class Prepared:
    """A Core statement whose compiled SQL is kept per dialect."""

    def __init__(self, statement: Executable):
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def compiled(self, conn: Connection) -> tuple[str, tuple[str, ...] | None]:
        """SQL text and, for positional drivers, the order of the parameters."""
        name = conn.dialect.name
        if name not in self._compiled:
            compiled = self.statement.compile(dialect=conn.dialect)
            order = tuple(compiled.positiontup) if compiled.positional else None
            self._compiled[name] = (compiled.string, order)
        return self._compiled[name]

    def run(
        self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> CursorResult:
        """Execute with one parameter mapping, or many (executemany)."""
        sql, order = self.compiled(conn)
        if order is None:
            return conn.exec_driver_sql(sql, params)
        if isinstance(params, Mapping):
            return conn.exec_driver_sql(sql, tuple(params[k] for k in order))
        return conn.exec_driver_sql(sql, [tuple(p[k] for k in order) for p in params])


def placeholders(conn: Connection, count: int) -> str:
    """``count`` positional placeholders of the connection's driver, comma-joined."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)

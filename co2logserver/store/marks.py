"""Which spool records are applied (SPEC §10), written with the data they apply.

:func:`applying` tells the write transactions of a block which record they apply;
:meth:`co2logserver.store.Store.transaction` then inserts its mark in the same
transaction, so a crash between the data and the mark cannot apply it twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection

from co2logserver.store.prepared import driver_cursor, driver_rows, placeholders

#: The spool record the current write transaction applies (SPEC §10), if any.
APPLYING: ContextVar[str | None] = ContextVar("co2logserver_applying", default=None)


class AlreadyApplied(Exception):
    """The spool record this transaction applies was applied before."""


@contextmanager
def applying(record_id: str) -> Iterator[None]:
    """Make the write transactions in this block record ``record_id`` as applied.

    The mark is written in the same transaction as the record's data, so a crash
    between the two cannot apply a record twice.
    """
    token = APPLYING.set(record_id)
    try:
        yield
    finally:
        APPLYING.reset(token)


def mark_applied(conn: Connection) -> None:
    """Insert the current spool record's mark; :raise AlreadyApplied: if present."""
    record_id = APPLYING.get()
    if record_id is None:
        return
    sql = (
        f"INSERT INTO spool_applied (id) VALUES ({placeholders(conn, 1)}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    if not driver_rows(conn, sql, [record_id]):
        raise AlreadyApplied(record_id)


def forget_marks(conn: Connection, prefix: str) -> None:
    """Delete the applied marks of a spool segment that is gone."""
    sql = f"DELETE FROM spool_applied WHERE id LIKE {placeholders(conn, 1)}"
    with driver_cursor(conn) as cursor:
        cursor.execute(sql, (prefix.replace("%", "") + "%",))

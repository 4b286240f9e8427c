"""Commits whose answer was lost: did they happen? (PostgreSQL)

When the connection breaks while COMMIT is on its way (PostgreSQL shut down or
failed over at that moment), the server may have committed or not, and the client
cannot tell. The request is then spooled (SPEC §10) and applied again later.
Readings are deduplicated by their key, so applying them twice stores nothing
twice; legacy upload rows have no key, and would be stored twice.

So a transaction that writes such rows asks PostgreSQL for its transaction id just
before COMMIT (one statement, only in those transactions). A commit that fails
carries the id as :attr:`StorageUnavailable.in_doubt`; the spool keeps it with the
record; before applying the record the applier asks ``txid_status``: a committed
transaction's record is only marked applied. SQLite commits in this process, so its
commits are never in doubt.
"""

from __future__ import annotations

from sqlalchemy import Connection

from co2logserver.store.prepared import driver_rows

#: Key of ``Connection.info`` (kept per pooled connection) while a transaction
#: writes rows without a key.
NEEDS_ID = "co2logserver_needs_transaction_id"
#: Key of a spool record's arguments that holds the id of the failed commit.
SPOOL_KEY = "in_doubt_transaction"


def keyless_rows_written(conn: Connection) -> None:
    """Note that this transaction wrote rows a second apply would store twice."""
    if conn.dialect.name == "postgresql":
        conn.info[NEEDS_ID] = True


def id_before_commit(conn: Connection) -> int | None:
    """The transaction's id if it wrote keyless rows (asked just before COMMIT)."""
    if not conn.info.pop(NEEDS_ID, False):
        return None
    return int(driver_rows(conn, "SELECT txid_current()", [])[0][0])


def forget(conn: Connection) -> None:
    """Clear the note when the transaction ends (``info`` outlives it)."""
    conn.info.pop(NEEDS_ID, None)


def outcome(conn: Connection, transaction_id: int) -> str | None:
    """``committed``, ``aborted``, ``in progress``, or ``None`` if too old to tell."""
    rows = driver_rows(conn, "SELECT txid_status(%s)", [transaction_id])
    return rows[0][0] if rows else None

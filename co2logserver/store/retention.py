"""SQL of retention: delete raw readings and old rollups in bounded batches.

Raw readings live in two tables: ``readings`` (every protocol but the legacy
upload, keyed by registration, time and type) and the legacy ``data`` table
(``POST /upload`` rows, aged by their upload-time column, the only time every row
has). Hourly rollups (``rollups_hourly``) are what is left of deleted readings and
are only deleted by their own, longer setting.

Each delete touches at most ``limit`` rows, so the write transaction around it (and
with it the SQLite writers' turn, :mod:`.writer_lock`) lasts milliseconds. Where a
search could be long (a table without an index on time), it runs first in a read
transaction, which never holds ingest up, and the write only deletes what it found,
checking the age again. Deleting by age needs no bookmark: a sweep that stops
anywhere is resumed by the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnClause,
    Connection,
    bindparam,
    column,
    delete,
    exists,
    func,
    inspect,
    select,
    table,
    text,
    tuple_,
    update,
)

from co2logserver.store import counters
from co2logserver.store.queries import bound
from co2logserver.store.rollup_build import raise_raw_horizon
from co2logserver.store.rollups import hour_of
from co2logserver.store.schema import (
    readings,
    registrations,
    rollups_hourly,
    sensors,
)

#: The hourly rollups' table (co2logserver.store.rollups); a database made before
#: rollups existed may not have it yet.
ROLLUPS = rollups_hourly.name


# ------------------------------------------------------------------------ readings


def registrations_with_old_readings(
    conn: Connection, cutoff: int, after: int, limit: int
) -> list[int]:
    """Up to ``limit`` registrations above ``after`` that have readings before
    ``cutoff``, in id order (one index probe each; run it in a read transaction)."""
    old = exists().where(
        readings.c.registration_id == registrations.c.id, readings.c.ts < cutoff
    )
    statement = (
        select(registrations.c.id)
        .where(registrations.c.id > after, old)
        .order_by(registrations.c.id)
        .limit(limit)
    )
    return list(conn.scalars(statement))


def delete_old_readings(
    conn: Connection, registration_id: int, cutoff: int, limit: int
) -> int:
    """Delete the oldest readings of one registration before ``cutoff``, at most
    ``limit``; return how many went. The sensor's count and first time follow.

    The batch ends at the ``limit``-th oldest key, so the delete is one range of the
    primary key: a cost in proportion to the batch, never to the history.
    """
    r = readings.c
    boundary = conn.execute(
        select(r.ts, r.type)
        .where(r.registration_id == registration_id, r.ts < cutoff)
        .order_by(r.ts, r.type)
        .offset(limit - 1)
        .limit(1)
    ).first()
    if boundary is None:
        older = r.ts < cutoff
    else:
        older = tuple_(r.ts, r.type) <= tuple_(boundary[0], boundary[1])
    statement = delete(readings).where(r.registration_id == registration_id, older)
    deleted = conn.execute(statement).rowcount or 0
    if deleted:
        uncount_readings(conn, registration_id, deleted)
        raise_raw_horizon(conn, cutoff)
    return deleted


def uncount_readings(conn: Connection, registration_id: int, deleted: int) -> None:
    """Take deleted readings off their sensor's count and move its first time on.

    The first time is the oldest reading left over the sensor's registrations: one
    ``min(ts)`` index probe per registration (a sensor has a few), never a scan.
    """
    suid = conn.scalar(
        select(registrations.c.suid).where(registrations.c.id == registration_id)
    )
    if suid is None:
        return
    ids = list(
        conn.scalars(select(registrations.c.id).where(registrations.c.suid == suid))
    )
    first = select(func.min(readings.c.ts))
    firsts = [conn.scalar(first.where(readings.c.registration_id == i)) for i in ids]
    left = [ts for ts in firsts if ts is not None]
    count = sensors.c.reading_count
    conn.execute(
        update(sensors)
        .where(sensors.c.suid == suid)
        .values(
            reading_count=func.max(count - deleted, 0)
            if conn.dialect.name == "sqlite"
            else func.greatest(count - deleted, 0),
            first_ts=min(left) if left else None,
        )
    )


def count_old_readings(conn: Connection, cutoff: int) -> int:
    """How many readings are older than ``cutoff`` (a scan: for progress bars)."""
    statement = select(func.count()).select_from(readings).where(readings.c.ts < cutoff)
    return int(conn.scalar(statement) or 0)


# ----------------------------------------------------------------- legacy data


def find_old_data_rows(
    conn: Connection, name: str, upload_column: str, cutoff: Any, limit: int
) -> tuple[int, int] | None:
    """SQLite: the rowid range of the first ``limit`` rows uploaded before
    ``cutoff`` (a scan in rowid order, i.e. upload order; run it in a read
    transaction, since the upload time has no index)."""
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        "SELECT min(rowid), max(rowid) FROM (SELECT rowid FROM "
        f"{quote(name)} WHERE {quote(upload_column)} < :cutoff "
        "ORDER BY rowid LIMIT :limit)"
    )
    first, last = conn.execute(
        text(sql), {"cutoff": bound(cutoff, True), "limit": limit}
    ).one()
    return None if first is None else (first, last)


def delete_data_rows(
    conn: Connection, name: str, upload_column: str, cutoff: Any, rows: tuple[int, int]
) -> int:
    """SQLite: delete the rows of a rowid range still uploaded before ``cutoff``."""
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"DELETE FROM {quote(name)} WHERE rowid BETWEEN :first AND :last "
        f"AND {quote(upload_column)} < :cutoff"
    )
    params = {"first": rows[0], "last": rows[1], "cutoff": bound(cutoff, True)}
    deleted = conn.execute(text(sql), params).rowcount or 0
    counters.uncount_rows(conn, deleted)
    return deleted


def delete_old_data_postgres(
    conn: Connection, name: str, upload_column: str, cutoff: Any, limit: int
) -> int:
    """PostgreSQL: delete at most ``limit`` rows uploaded before ``cutoff``.

    The table has no key; the rows' ``ctid`` names them within the statement.
    PostgreSQL's writers do not queue behind each other, so the search runs in the
    write itself.
    """
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"DELETE FROM {quote(name)} WHERE ctid = ANY(ARRAY(SELECT ctid FROM "
        f"{quote(name)} WHERE {quote(upload_column)} < :cutoff LIMIT :limit))"
    )
    deleted = conn.execute(text(sql), {"cutoff": cutoff, "limit": limit}).rowcount or 0
    counters.uncount_rows(conn, deleted)
    return deleted


def count_old_data_rows(
    conn: Connection, name: str, upload_column: str, cutoff: Any
) -> int:
    """How many legacy rows were uploaded before ``cutoff`` (a scan)."""
    upload: ColumnClause[Any] = column(upload_column)
    sqlite = conn.dialect.name == "sqlite"
    statement = (
        select(func.count())
        .select_from(table(name, upload))
        .where(upload < bound(cutoff, sqlite))
    )
    return int(conn.scalar(statement) or 0)


def has_table(conn: Connection, name: str, column_name: str | None = None) -> bool:
    """Whether the database has the table ``name`` (with ``column_name``)."""
    inspector = inspect(conn)
    if not inspector.has_table(name):
        return False
    if column_name is None:
        return True
    names = {info["name"].lower() for info in inspector.get_columns(name)}
    return column_name.lower() in names


# -------------------------------------------------------------------- rollups


def rollup_cutoff(moment: float) -> int:
    """The start of the hour at or before ``moment`` (UNIX seconds): rollups of
    hours that ended by then may go, never one that still covers kept readings."""
    return hour_of(int(moment))


def find_old_rollups(
    conn: Connection, cutoff: int, limit: int
) -> list[tuple[int, int, int]]:
    """Up to ``limit`` (registration, type, last hour) groups of rollups of hours
    before ``cutoff``, in key order (run it in a read transaction)."""
    r = rollups_hourly.c
    keys = (
        select(r.registration_id, r.type, r.hour)
        .where(r.hour < cutoff)
        .order_by(r.registration_id, r.type, r.hour)
        .limit(limit)
        .subquery()
    )
    statement = select(
        keys.c.registration_id, keys.c.type, func.max(keys.c.hour)
    ).group_by(keys.c.registration_id, keys.c.type)
    return [(row[0], row[1], row[2]) for row in conn.execute(statement)]


def delete_rollups(
    conn: Connection, groups: Sequence[tuple[int, int, int]], cutoff: int
) -> int:
    """Delete the rollups of each (registration, type) up to its last hour found."""
    r = rollups_hourly.c
    statement = delete(rollups_hourly).where(
        r.registration_id == bindparam("registration"),
        r.type == bindparam("quantity"),
        r.hour <= bindparam("last"),
        r.hour < cutoff,
    )
    deleted = 0
    for registration, quantity, last in groups:
        params = {"registration": registration, "quantity": quantity, "last": last}
        deleted += conn.execute(statement, params).rowcount or 0
    return deleted


def count_old_rollups(conn: Connection, cutoff: int) -> int:
    """How many rollups are of hours before ``cutoff``."""
    statement = (
        select(func.count())
        .select_from(rollups_hourly)
        .where(rollups_hourly.c.hour < cutoff)
    )
    return int(conn.scalar(statement) or 0)

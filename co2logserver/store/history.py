"""SQL that reads a sensor's stored history back: pages, streams and buckets.

Pages follow the primary key, one registration after the other, so each page is
a range scan whatever its depth (issue 18); aggregation buckets per type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select, tuple_
from sqlalchemy.engine import Row

from co2logserver.store import rollups
from co2logserver.store.schema import readings, registrations
from co2logserver.store.selection import ReadingSelection


class ReadingRow(NamedTuple):
    """One reading as the read-back shows it, with its registration's kind."""

    registration_id: int
    ts: int
    type: int
    value: float
    secure: bool


def reading_row(row: Any, secure: bool) -> ReadingRow:
    """A ``(registration_id, ts, type, value)`` row with its registration's kind."""
    return ReadingRow(row[0], row[1], row[2], row[3], secure)


def reading_registrations(
    conn: Connection, selection: ReadingSelection, first: int | None
) -> list[tuple[int, bool]]:
    """``(id, secure)`` of the selected registrations in order, from ``first`` on."""
    statement = select(registrations.c.id, registrations.c.secure).where(
        *selection.of_registrations()
    )
    if first is not None:
        statement = statement.where(registrations.c.id >= first)
    return [
        (r[0], bool(r[1])) for r in conn.execute(statement.order_by(registrations.c.id))
    ]


def registration_readings(
    registration_id: int,
    selection: ReadingSelection,
    after: tuple[int, int] | None,
    limit: int,
):
    """One registration's selected readings in key order after ``(ts, type)``.

    ``registration_id = ? AND (ts, type) > (?, ?) ORDER BY ts, type`` is a range
    scan of the primary key on SQLite and PostgreSQL: a page costs the same at any
    depth of a history (``tests/test_readback.py`` checks both query plans).
    """
    statement = select(
        readings.c.registration_id, readings.c.ts, readings.c.type, readings.c.value
    ).where(
        readings.c.registration_id == registration_id,
        *selection.of_readings(readings.c.ts, readings.c.type),
    )
    if after is not None:
        statement = statement.where(
            tuple_(readings.c.ts, readings.c.type) > tuple_(*after)
        )
    return statement.order_by(readings.c.ts, readings.c.type).limit(limit)


def registration_ranges(
    conn: Connection,
    selection: ReadingSelection,
    after: tuple[int, int, int] | None,
) -> Iterator[tuple[int, bool, tuple[int, int] | None]]:
    """``(registration, secure, (ts, type) to continue after)`` from the cursor on."""
    first = after[0] if after else None
    for registration, secure in reading_registrations(conn, selection, first):
        key = (after[1], after[2]) if after and registration == after[0] else None
        yield registration, secure, key


def page_of_readings(
    conn: Connection,
    selection: ReadingSelection,
    after: tuple[int, int, int] | None,
    limit: int,
) -> list[ReadingRow]:
    """Up to ``limit`` selected readings in key order after the cursor ``after``.

    ``after`` is the ``(registration_id, ts, type)`` of the last reading already
    returned; registrations follow each other in order, each one range-scanned.
    """
    rows: list[ReadingRow] = []
    for registration, secure, key in registration_ranges(conn, selection, after):
        statement = registration_readings(
            registration, selection, key, limit - len(rows)
        )
        rows += [reading_row(row, secure) for row in conn.execute(statement)]
        if len(rows) >= limit:
            break
    return rows


def stream_readings(
    conn: Connection,
    selection: ReadingSelection,
    after: tuple[int, int, int] | None,
) -> Iterator[ReadingRow]:
    """Every selected reading after the cursor, fetched in chunks, not at once."""
    for registration, secure, key in registration_ranges(conn, selection, after):
        statement = registration_readings(registration, selection, key, 2**62)
        for row in stream(conn, statement):
            yield reading_row(row, secure)


def aggregate_readings(selection: ReadingSelection, interval: int):
    """Buckets of ``interval`` seconds per type: count, min, mean, max."""
    bucket = (readings.c.ts - readings.c.ts % interval).label("bucket")
    return (
        select(
            readings.c.type,
            bucket,
            func.count().label("count"),
            func.min(readings.c.value).label("min"),
            func.avg(readings.c.value).label("mean"),
            func.max(readings.c.value).label("max"),
        )
        .join(registrations, registrations.c.id == readings.c.registration_id)
        .where(*selection.conditions(readings.c.ts, readings.c.type))
        .group_by(readings.c.type, bucket)
        .order_by(readings.c.type, bucket)
    )


def aggregate_buckets(
    conn: Connection, selection: ReadingSelection, interval: int
) -> list:
    """Buckets per type with ``type, bucket, count, min, mean, max``.

    From the hourly rollups when the buckets are whole hours over whole hours and
    the rollups are built; from the raw readings otherwise. Both give the same.
    """
    if rollups.covers(selection.start, selection.end, interval) and rollups.is_built(
        conn
    ):
        return rollups.aggregate_rollups(conn, selection, interval)
    return list(conn.execute(aggregate_readings(selection, interval)))


def stream(conn: Connection, statement) -> Iterator[Row]:
    """Rows of ``statement`` fetched in chunks, not all at once."""
    result = conn.execution_options(stream_results=True, yield_per=1000)
    yield from result.execute(statement)

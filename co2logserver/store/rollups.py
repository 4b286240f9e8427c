"""Hourly rollups: per registration, quantity and hour, count/min/max/sum.

Written in the transaction of the readings (:func:`add_new_readings`, for the rows
the INSERT actually stored, so a resent reading is not counted twice), they let an
hour-multiple bucket of the read-back, a chart or a sparkline read one row per
hour instead of every raw reading (issue 18). A database that had readings before
the rollups existed is not "built" until ``python3 -m co2logserver build-rollups``
has walked it (:mod:`.rollup_build`); until then every query takes the raw path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, func, insert, select

from co2logserver.store.prepared import driver_rows, placeholders
from co2logserver.store.schema import (
    readings,
    registrations,
    rollups_hourly,
    rollups_state,
    sensors,
)
from co2logserver.store.selection import ReadingSelection

log = logging.getLogger(__name__)

HOUR = 3600
#: The builder's row of ``rollups_state`` (:mod:`.rollup_build` keeps another).
STATE = "hourly"
#: Rollup rows per UPSERT: 7 parameters each stays below SQLite's 32766 variables.
UPSERT_CHUNK = 1000

COLUMNS = "registration_id, type, hour, count, min, max, sum"
#: The same text on SQLite (3.24+) and PostgreSQL; CASE, as LEAST/GREATEST are
#: PostgreSQL's and SQLite's two-argument min/max are not.
ON_CONFLICT = (
    " ON CONFLICT (registration_id, type, hour) DO UPDATE SET"
    " count = rollups_hourly.count + excluded.count,"
    " min = CASE WHEN excluded.min < rollups_hourly.min"
    " THEN excluded.min ELSE rollups_hourly.min END,"
    " max = CASE WHEN excluded.max > rollups_hourly.max"
    " THEN excluded.max ELSE rollups_hourly.max END,"
    " sum = rollups_hourly.sum + excluded.sum"
)


def hour_of(ts: int) -> int:
    """The first second of the hour of ``ts`` (stored times are after 2000)."""
    return ts - ts % HOUR


def add_new_readings(
    conn: Connection, rows: Iterable[tuple[int, int, int, float]]
) -> None:
    """Fold newly stored ``(registration, ts, type, value)`` rows into the rollups.

    The rows are summed per hour first: PostgreSQL refuses an UPSERT that touches
    one row twice, and one row per hour is one round trip for a whole request.
    """
    hours: dict[tuple[int, int, int], list] = {}
    for registration, ts, kind, value in rows:
        key = (registration, kind, hour_of(ts))
        acc = hours.get(key)
        if acc is None:
            hours[key] = [1, value, value, value]
        else:
            acc[0] += 1
            acc[1] = min(acc[1], value)
            acc[2] = max(acc[2], value)
            acc[3] += value
    upsert(conn, [(*key, *acc) for key, acc in hours.items()])


def upsert(conn: Connection, rows: Sequence[tuple]) -> None:
    """Add ``(registration, type, hour, count, min, max, sum)`` rows to the rollups."""
    for start in range(0, len(rows), UPSERT_CHUNK):
        chunk = rows[start : start + UPSERT_CHUNK]
        row = f"({placeholders(conn, 7)})"
        sql = (
            f"INSERT INTO rollups_hourly ({COLUMNS}) VALUES "
            + ", ".join([row] * len(chunk))
            + ON_CONFLICT
        )
        driver_rows(conn, sql, [p for values in chunk for p in values])


# ------------------------------------------------------------------- reading them


def covers(start: int | None, end: int | None, interval: int) -> bool:
    """Whether buckets of ``interval`` over ``[start, end)`` are whole hours."""
    return (
        interval % HOUR == 0
        and (start is None or (start >= 0 and start % HOUR == 0))
        and (end is None or (end >= 0 and end % HOUR == 0))
    )


def is_built(conn: Connection) -> bool:
    """Whether the rollups hold every stored reading."""
    built = conn.execute(
        select(rollups_state.c.built).where(rollups_state.c.name == STATE)
    ).scalar()
    return bool(built)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one type, as the raw aggregation gives it (a dataclass, as
    a tuple's ``count`` method would shadow the field)."""

    type: int
    bucket: int
    count: int
    min: float
    mean: float
    max: float


def aggregate_rollups(
    conn: Connection, selection: ReadingSelection, interval: int
) -> list[Bucket]:
    """Buckets of ``interval`` seconds (a multiple of an hour) from the rollups.

    The caller checks :func:`covers` and :func:`is_built`; the result is the raw
    aggregation's (the mean up to the order floating-point sums are added in).
    """
    r = rollups_hourly.c
    bucket = (r.hour - r.hour % interval).label("bucket")
    statement = (
        select(
            r.type,
            bucket,
            func.sum(r.count).label("count"),
            func.min(r.min).label("min"),
            func.sum(r.sum).label("sum"),
            func.max(r.max).label("max"),
        )
        .join(registrations, registrations.c.id == r.registration_id)
        .where(*selection.conditions(r.hour, r.type))
        .group_by(r.type, bucket)
        .order_by(r.type, bucket)
    )
    return [
        Bucket(kind, int(start), int(count), low, float(total) / int(count), high)
        for kind, start, count, low, total, high in conn.execute(statement)
    ]


def hourly_means(
    conn: Connection, suids: Sequence[str], kind: int, since: int
) -> dict[str, list[tuple[int, float]]]:
    """Each sensor's ``(hour, mean)`` of type ``kind`` since ``since``, in one query.

    For sparklines of many sensors: the current registration's hours only.
    """
    r = rollups_hourly.c
    statement = (
        select(sensors.c.suid, r.hour, r.sum, r.count)
        .join(sensors, sensors.c.registration_id == r.registration_id)
        .where(sensors.c.suid.in_(list(suids)), r.type == kind, r.hour >= since)
        .order_by(sensors.c.suid, r.hour)
    )
    means: dict[str, list[tuple[int, float]]] = {suid: [] for suid in suids}
    for suid, hour, total, count in conn.execute(statement):
        means[suid].append((int(hour), float(total) / int(count)))
    return means


# ------------------------------------------------------------------ building them


class State(NamedTuple):
    """``rollups_state``: built, and where the builder goes on."""

    built: bool
    next_registration: int | None
    next_hour: int | None


def state(conn: Connection) -> State | None:
    """The builder's state, ``None`` before :func:`ensure` ran."""
    row = conn.execute(
        select(
            rollups_state.c.built,
            rollups_state.c.next_registration,
            rollups_state.c.next_hour,
        ).where(rollups_state.c.name == STATE)
    ).first()
    return None if row is None else State(bool(row[0]), row[1], row[2])


def ensure(conn: Connection) -> None:
    """At schema preparation: an empty database's rollups are complete; a database
    with readings from before the rollups needs ``build-rollups`` (logged)."""
    current = state(conn)
    if current is None:
        empty = conn.execute(select(readings.c.ts).limit(1)).first() is None
        conn.execute(
            insert(rollups_state).values(
                name=STATE,
                built=empty,
                next_registration=None if empty else 0,
                next_hour=None if empty else 0,
                updated_at=int(time.time()),
            )
        )
        current = State(empty, 0, 0)
    if not current.built:
        warn_not_built()


def warn_not_built() -> None:
    """The operator's line: aggregates read raw readings until the rollups are built."""
    log.warning(
        "the hourly rollups of this database's stored readings are not built yet: "
        "run `python3 -m co2logserver build-rollups` (resumable; the server may keep "
        "running); until then aggregates read the raw readings"
    )

"""SQL of the dashboard pages: upload and sensor counts, sparkline readings.

Each page asks the database a fixed number of questions, however many sensors
there are: the upload counters, one aggregate over ``sensors`` and one statement
(or two) for the newest readings of the sensors the page shows.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Numeric, case, cast, func, select

from co2logserver.store import aliases, counters
from co2logserver.store.prepared import driver_rows, placeholders
from co2logserver.store.schema import sensor_profiles, sensors

#: Branches of one UNION ALL; SQLite allows at most 500 (SQLITE_MAX_COMPOUND_SELECT).
MAX_BRANCHES = 400


def upload_counts(store: Any, now: datetime.datetime) -> dict[str, Any]:
    """Rows of the legacy data table: in all, uploaded in the last hour and day.

    Read from the counters the uploads keep (:mod:`co2logserver.store.counters`),
    never from the data table: constant time however many rows it holds.
    """
    with store.reading() as conn:
        return counters.upload_counts(conn, now)


def sensor_counts(conn: Connection, silent_after: int, now: float) -> dict[str, int]:
    """Sensors, stored readings, sensors with (or without) a recent reading, and
    the time of the newest reading (``None`` before the first)."""
    active = func.sum(case((sensors.c.last_ts >= int(now - silent_after), 1), else_=0))
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(sensors.c.reading_count), 0),
            active,
            func.max(sensors.c.last_ts),
        )
    ).one()
    total, stored, recent = row[0], int(row[1]), int(row[2] or 0)
    return {
        "sensors": total,
        "readings": stored,
        "active": recent,
        "silent": total - recent,
        "newest_reading": row[3],
    }


def newest_readings(
    conn: Connection,
    registration_ids: Sequence[int],
    per_registration: int,
    types: Mapping[int, int] | None = None,
) -> dict[int, list[tuple[int, int, float]]]:
    """The newest ``(ts, type, value)`` rows of each registration, newest first.

    One UNION ALL of per-registration branches, each a backward scan of the
    readings primary key that stops after ``per_registration`` rows, so a page
    costs one statement (per 400 sensors) and never reads a sensor's history.
    With ``types`` (registration -> type code), a branch keeps that type only.
    The text is the driver's with placeholders: built by SQLAlchemy, 50 branches
    cost more to compile than to run.
    """
    found: dict[int, list[tuple[int, int, float]]] = {i: [] for i in registration_ids}
    ids = list(registration_ids)
    mark = placeholders(conn, 1)
    where = f"registration_id = {mark}"
    if types is not None:
        where += f" AND type = {mark}"
    branch = (
        "SELECT * FROM (SELECT registration_id, ts, type, value FROM readings "
        f"WHERE {where} ORDER BY ts DESC, type DESC LIMIT {int(per_registration)}) "
        "AS b"
    )
    for start in range(0, len(ids), MAX_BRANCHES):
        chunk = ids[start : start + MAX_BRANCHES]
        params: list[int] = []
        for registration_id in chunk:
            params.append(registration_id)
            if types is not None:
                params.append(types[registration_id])
        sql = " UNION ALL ".join([branch] * len(chunk))
        for row in driver_rows(conn, sql, params) if chunk else ():
            found[row[0]].append((row[1], row[2], row[3]))
    for rows in found.values():
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return found


#: Columns the sensor list sorts by (the view's names); ``location`` is its own.
SORT_COLUMNS = {
    "suid": sensors.c.suid,
    "model": sensors.c.model,
    "secure": sensors.c.secure,
    "last_reading": sensors.c.last_ts,
    "reading_count": sensors.c.reading_count,
}


def search_condition(search: str):
    """Sensors a sensor-list search finds: a SUID prefix, an alias lookup
    (:mod:`co2logserver.store.aliases`) or the model, case-insensitively."""
    text = search.lower()
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (
        sensors.c.suid.like(f"{escaped}%", escape="\\")
        | sensors.c.suid.in_(aliases.matching_suids(search))
        | (func.lower(sensors.c.model) == text)
    )


def sensor_page(
    conn: Connection,
    sort: str,
    descending: bool,
    offset: int,
    limit: int,
    decimals: int,
    search: str | None = None,
) -> list[Any]:
    """One page of the sensor list in SQL order: missing values last, then SUID.

    ``location`` sorts by the public (rounded) position, hidden ones as missing,
    so the order tells nothing finer than the page shows.
    """
    hidden = select(sensor_profiles.c.suid).where(
        sensor_profiles.c.location_public.is_(False)
    )
    if sort == "location":
        public = sensors.c.suid.not_in(hidden)

        def rounded(value):
            return case((public, func.round(cast(value, Numeric), decimals)))

        keys = [rounded(sensors.c.latitude), rounded(sensors.c.longitude)]
    else:
        keys = [SORT_COLUMNS[sort]]
    order = []
    for key in keys:
        order += [key.is_(None), key.desc() if descending else key.asc()]
    # The sort carries the SUIDs and keys only (sorting whole rows of 15,000
    # sensors took most of a page's time); the page's rows are fetched after.
    statement = select(sensors.c.suid).order_by(*order, sensors.c.suid)
    if search:
        statement = statement.where(search_condition(search))
    suids = list(conn.scalars(statement.offset(offset).limit(limit)))
    if not suids:
        return []
    rows = {
        row.suid: row
        for row in conn.execute(select(sensors).where(sensors.c.suid.in_(suids)))
    }
    return [rows[suid] for suid in suids]


def search_counts(
    conn: Connection, search: str, silent_after: int, now: float
) -> dict[str, int]:
    """How many sensors a search finds, and how many of them are silent."""
    recent = func.sum(case((sensors.c.last_ts >= int(now - silent_after), 1), else_=0))
    total, active = conn.execute(
        select(func.count(), recent).where(search_condition(search))
    ).one()
    return {"sensors": total, "silent": total - int(active or 0)}

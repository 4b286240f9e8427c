"""SQL of the dashboard pages: upload and sensor counts, sparkline readings.

Each page asks the database a fixed number of questions, however many sensors
there are: one scan of the data table, one aggregate over ``sensors`` and one
statement for every sensor's newest readings.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnClause,
    Connection,
    case,
    column,
    func,
    select,
    table,
    union_all,
)

from co2logserver.store.queries import bound
from co2logserver.store.schema import readings, sensors

#: Branches of one UNION ALL; SQLite allows at most 500 (SQLITE_MAX_COMPOUND_SELECT).
MAX_BRANCHES = 400


def upload_counts(store: Any, now: datetime.datetime) -> dict[str, Any]:
    """Rows of the legacy data table: in all, uploaded in the last hour and day.

    One scan of the table answers all of it (the upload time has no index).
    SQLite keeps the upload time as ISO text (``2026-11-22 05:10:03.794833+00:00``)
    whose text order is time order, so the cutoffs are compared as text there.
    """
    upload: ColumnClause[Any] = column(store.data.upload_time_column)
    data = table(store.data.name, upload)
    sqlite = store.dialect == "sqlite"

    def since(seconds: int):
        cutoff = bound(now - datetime.timedelta(seconds=seconds), sqlite)
        return func.coalesce(func.sum(case((upload > cutoff, 1), else_=0)), 0)

    statement = select(func.count(), func.max(upload), since(3600), since(86400))
    with store.reading() as conn:
        rows, latest, hour, day = conn.execute(statement.select_from(data)).one()
    return {
        "rows": rows,
        "latest_upload": latest,
        "uploads_hour": int(hour),
        "uploads_day": int(day),
    }


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
    conn: Connection, registration_ids: Sequence[int], per_registration: int
) -> dict[int, list[tuple[int, int, float]]]:
    """The newest ``(ts, type, value)`` rows of each registration, newest first.

    One UNION ALL of per-registration branches, each a backward scan of the
    readings primary key that stops after ``per_registration`` rows, so a page
    costs one statement (per 400 sensors) and never reads a sensor's history.
    """
    found: dict[int, list[tuple[int, int, float]]] = {i: [] for i in registration_ids}
    ids = list(registration_ids)
    for start in range(0, len(ids), MAX_BRANCHES):
        branches = [
            select(
                readings.c.registration_id,
                readings.c.ts,
                readings.c.type,
                readings.c.value,
            )
            .where(readings.c.registration_id == registration_id)
            .order_by(readings.c.ts.desc(), readings.c.type.desc())
            .limit(per_registration)
            .subquery()
            .select()
            for registration_id in ids[start : start + MAX_BRANCHES]
        ]
        statement = branches[0] if len(branches) == 1 else union_all(*branches)
        for row in conn.execute(statement):
            found[row[0]].append((row[1], row[2], row[3]))
    for rows in found.values():
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return found

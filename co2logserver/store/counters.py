"""Upload counters of the legacy data table: what ``/`` shows, without a scan.

The dashboard shows the rows stored, those of the last hour and day and the newest
upload time. Counting them from the data table read every row on every view (the
upload time has no index; 0.49 s at 1 M rows), so :func:`record_upload` keeps them
in ``upload_totals`` and ``upload_minutes`` in the transaction of the upload, and
:func:`upload_counts` reads one row plus at most 1440 minute rows.

A database of 0.1.2 (or one from before these tables) is counted once, when the
schema transaction creates them (:func:`fill_from_data`).
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from typing import Any

from sqlalchemy import Connection, column, func, select, table

from co2logserver.store.prepared import driver_rows, placeholders
from co2logserver.store.schema import upload_minutes, upload_totals

log = logging.getLogger("co2logserver.store")

#: Name of the data table's rows of ``upload_totals`` (``data/<shard>``).
DATA = "data"
#: Rows each count is spread over on PostgreSQL, so concurrent uploads rarely wait
#: for each other's row lock until commit (SQLite serialises its writers anyway).
SHARDS = {"postgresql": 8, "sqlite": 1}
#: Minute rows kept: two days, so "last day" is whole however late the prune runs.
KEEP_MINUTES = 2 * 1440


def epoch(moment: Any) -> float | None:
    """UNIX seconds of an upload time: a datetime, or the ISO text SQLite keeps.

    A naive time is UTC (0.1.2 wrote UTC); text that is no time is ``None``.
    """
    if isinstance(moment, str):
        try:
            moment = datetime.datetime.fromisoformat(moment.strip())
        except ValueError:
            return None
    if not isinstance(moment, datetime.datetime):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def record_upload(conn: Connection, rows: int, uploaded: Any) -> None:
    """Count ``rows`` legacy rows uploaded at ``uploaded`` (UNIX seconds, or the
    upload-time cell as :func:`epoch` reads it; now when it is no time).

    Two upserts on primary keys, in a random one of :data:`SHARDS` rows; a new
    minute also prunes minutes older than :data:`KEEP_MINUTES` (a range delete on
    the key, once a minute per shard at most).
    """
    if rows <= 0:
        return
    uploaded_at = uploaded if isinstance(uploaded, float | int) else epoch(uploaded)
    if uploaded_at is None:
        uploaded_at = time.time()
    mark = placeholders(conn, 1)
    minute = int(uploaded_at // 60)
    shard = random.randrange(SHARDS.get(conn.dialect.name, 1))
    # On the driver's cursor: a SQLAlchemy execution costs more than the upsert.
    driver_rows(
        conn,
        "INSERT INTO upload_totals (name, rows, latest_upload) "
        f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (name) DO UPDATE SET "
        "rows = upload_totals.rows + excluded.rows, latest_upload = CASE "
        "WHEN upload_totals.latest_upload IS NULL "
        "OR upload_totals.latest_upload < excluded.latest_upload "
        "THEN excluded.latest_upload ELSE upload_totals.latest_upload END",
        (f"{DATA}/{shard}", rows, uploaded_at),
    )
    [(new_minute,)] = driver_rows(
        conn,
        "INSERT INTO upload_minutes (minute, shard, rows) "
        f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (minute, shard) "
        "DO UPDATE SET rows = upload_minutes.rows + excluded.rows RETURNING rows",
        (minute, shard, rows),
    )
    if new_minute == rows:
        driver_rows(
            conn,
            f"DELETE FROM upload_minutes WHERE minute < {mark}",
            (minute - KEEP_MINUTES,),
        )


def uncount_rows(conn: Connection, rows: int) -> None:
    """Take ``rows`` deleted legacy rows (retention) off the total, in the
    transaction that deletes them. Minute counts need nothing: retention keeps at
    least a day, and minutes older than :data:`KEEP_MINUTES` are pruned anyway."""
    if rows <= 0:
        return
    mark = placeholders(conn, 1)
    conn.exec_driver_sql(
        f"INSERT INTO upload_totals (name, rows) VALUES ({mark}, {mark}) "
        "ON CONFLICT (name) DO UPDATE SET rows = upload_totals.rows + excluded.rows",
        (f"{DATA}/0", -rows),
    )


def upload_counts(conn: Connection, now: datetime.datetime) -> dict[str, Any]:
    """Rows of the legacy data table: in all, uploaded in the last hour and day.

    "Last hour" and "last day" count whole minutes: the minute that holds the
    cutoff counts in full (at most a minute's uploads more than the exact count).
    """
    total = conn.execute(
        select(
            func.sum(upload_totals.c.rows), func.max(upload_totals.c.latest_upload)
        ).where(upload_totals.c.name.like(f"{DATA}/%"))
    ).one()
    minute = int(now.timestamp() // 60)

    def since(minutes: int):
        return func.coalesce(
            func.sum(upload_minutes.c.rows).filter(
                upload_minutes.c.minute >= minute - minutes
            ),
            0,
        )

    hour, day = conn.execute(
        select(since(60), since(1440)).where(upload_minutes.c.minute >= minute - 1440)
    ).one()
    latest = None
    if total[1] is not None:
        latest = datetime.datetime.fromtimestamp(total[1], datetime.UTC)
    return {
        "rows": int(total[0] or 0),
        "latest_upload": latest,
        "uploads_hour": int(hour),
        "uploads_day": int(day),
    }


def fill_from_data(
    conn: Connection, data_name: str, upload_column: str, now: float
) -> None:
    """Count the rows a data table holds already (once, with the new tables).

    One pass over the table: its row count and newest upload time in SQL, the
    upload times of the last two days bucketed here (SQLite keeps them as text,
    so they are compared as text there, like 0.1.2 wrote them).
    """
    upload: Any = column(upload_column)
    data = table(data_name, upload)
    rows, latest = conn.execute(
        select(func.count(), func.max(upload)).select_from(data)
    ).one()
    if not rows:
        return
    cutoff: Any = datetime.datetime.fromtimestamp(now - KEEP_MINUTES * 60, datetime.UTC)
    if conn.dialect.name == "sqlite":
        cutoff = cutoff.isoformat(sep=" ")
    minutes: dict[int, int] = {}
    for (moment,) in conn.execute(select(upload).where(upload > cutoff)):
        seconds = epoch(moment)
        if seconds is not None:
            minutes[int(seconds // 60)] = minutes.get(int(seconds // 60), 0) + 1
    conn.execute(
        upload_totals.insert().values(
            name=f"{DATA}/0", rows=rows, latest_upload=epoch(latest)
        )
    )
    if minutes:
        conn.execute(
            upload_minutes.insert(),
            [{"minute": m, "shard": 0, "rows": n} for m, n in sorted(minutes.items())],
        )
    log.info("database: counted the %d rows of the %s table", rows, data_name)

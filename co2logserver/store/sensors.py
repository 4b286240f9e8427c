"""SQL of the OpenSmog sensor API: sensors, registrations and readings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    bindparam,
    case,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row

from co2logserver.store import aliases, rollups
from co2logserver.store.prepared import (
    Prepared,
    driver_cursor,
    driver_rows,
    placeholders,
)
from co2logserver.store.schema import registrations, sensors

#: ``(ts, type code, value)`` of one reading.
Reading = tuple[int, int, float]


SENSOR_BY_SUID = Prepared(select(sensors).where(sensors.c.suid == bindparam("suid")))


def quiet(conn: Connection, sql: str, params: tuple) -> tuple | None:
    """Run SQL on the driver's cursor, past SQLAlchemy's statement and row logging.

    SECRETs go only through here, so no log level ever shows one.
    """
    with driver_cursor(conn) as cursor:
        cursor.execute(sql.replace("?", placeholders(conn, 1)), params)
        return cursor.fetchone() if cursor.description else None


def registration_secret(conn: Connection, registration_id: int) -> str | None:
    """The SECRET of a registration (``None`` for rogue and ended ones)."""
    row = quiet(
        conn, "SELECT secret FROM registrations WHERE id = ?", (registration_id,)
    )
    return row[0] if row else None


def registration_credentials(
    conn: Connection, registration_id: int
) -> tuple[str | None, bool]:
    """The SECRET of a registration and whether it has signed with OpenSmogHash2.

    One round trip on the hot path of every verified post: the second answer is
    what refuses a downgrade to plain OpenSmogHash.
    """
    row = quiet(
        conn,
        "SELECT secret, EXISTS (SELECT 1 FROM signed_seqs WHERE registration_id = ?)"
        " FROM registrations WHERE id = ?",
        (registration_id, registration_id),
    )
    return (row[0], bool(row[1])) if row else (None, False)


def forget_old_secrets(conn: Connection, suid: str, registration_id: int) -> None:
    """Clear the SECRETs of a sensor's earlier registrations (out of backups too)."""
    quiet(
        conn,
        "UPDATE registrations SET secret = NULL WHERE suid = ? AND id <> ?",
        (suid, registration_id),
    )


def get_sensor(conn: Connection, suid: str) -> Row | None:
    """The sensor row (without any SECRET), or ``None``."""
    return SENSOR_BY_SUID.first(conn, {"suid": suid})


def sensor_to_write(conn: Connection, suid: str) -> Row | None:
    """The sensor row for a write transaction that may create it.

    Two first posts (or PUTs) of one new SUID must not both insert it: on
    PostgreSQL a transaction-scoped advisory lock on the SUID makes the second wait
    for the first and then see its row. (SQLite writers are serialised already.)
    """
    sensor = get_sensor(conn, suid)
    if sensor is None and conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:suid, 0))"),
            {"suid": suid},
        )
        sensor = get_sensor(conn, suid)
    return sensor


def new_registration(
    conn: Connection, suid: str, secure: bool, secret: str | None, now: int
) -> int:
    """Insert a registration and return its id."""
    result = conn.execute(
        insert(registrations).values(suid=suid, secure=secure, created_at=now)
    )
    # An INSERT of one row always has its key (it is None for executemany only).
    registration_id = result.inserted_primary_key[0]  # type: ignore[index]
    if secret is not None:
        quiet(
            conn,
            "UPDATE registrations SET secret = ? WHERE id = ?",
            (secret, registration_id),
        )
    return registration_id


def save_sensor(
    conn: Connection,
    suid: str,
    registration_id: int,
    secure: bool,
    metadata: dict[str, Any] | None,
    now: int,
    exists: bool,
) -> None:
    """Point the sensor at ``registration_id``; replace its metadata when given."""
    values: dict[str, Any] = {
        "registration_id": registration_id,
        "secure": secure,
        "updated_at": now,
    }
    if metadata is not None:
        values.update(metadata)
    if exists:
        conn.execute(update(sensors).where(sensors.c.suid == suid).values(**values))
    else:
        conn.execute(
            insert(sensors).values(suid=suid, created_at=now, reading_count=0, **values)
        )


#: Rows per INSERT: 4 parameters each stays below SQLite's 32766 variables.
INSERT_CHUNK = 2000


def insert_readings(
    conn: Connection, registration_id: int, values: Sequence[Reading]
) -> list[tuple[int, int]]:
    """Insert one registration's readings; return the new ``(ts, type)`` keys.

    A reading already stored is kept as it was (safe retries).
    """
    rows = [(registration_id, ts, kind, value) for ts, kind, value in values]
    return [(ts, kind) for _reg, ts, kind in insert_reading_rows(conn, rows)]


def insert_reading_rows(
    conn: Connection, rows: Sequence[tuple[int, int, int, float]]
) -> list[tuple[int, int, int]]:
    """Insert ``(registration, ts, type, value)`` rows of any registrations at once.

    Returns the ``(registration, ts, type)`` keys that were new. The multi-row
    INSERT with ``ON CONFLICT DO NOTHING RETURNING`` is the same text on SQLite and
    PostgreSQL; a request of many devices is one statement per 2000 readings.
    The rows stored (and only those) are added to the hourly rollups.
    """
    new: list[tuple[int, int, int, float]] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        row = f"({placeholders(conn, 4)})"
        sql = (
            "INSERT INTO readings (registration_id, ts, type, value) VALUES "
            + ", ".join([row] * len(chunk))
            + " ON CONFLICT DO NOTHING RETURNING registration_id, ts, type, value"
        )
        new += driver_rows(conn, sql, [p for values in chunk for p in values])
    if new:
        rollups.add_new_readings(conn, new)
    return [(registration, ts, kind) for registration, ts, kind, _ in new]


class DeviceSensor(NamedTuple):
    """What the device path needs of a sensor row."""

    suid: str
    registration_id: int
    secure: bool
    alias: str | None
    latitude: float | None
    longitude: float | None
    elevation: float | None


def sensors_by_suid(conn: Connection, suids: Sequence[str]) -> dict[str, DeviceSensor]:
    """The sensors among ``suids`` that exist, in one query on the driver's cursor.

    (A SQLAlchemy ``IN`` of varying length is compiled anew each time: on a
    protocol request of a few devices that cost more than the query.)
    """
    if not suids:
        return {}
    sql = (
        f"SELECT {', '.join(DeviceSensor._fields)} FROM sensors WHERE suid IN "
        f"({placeholders(conn, len(suids))})"
    )
    rows = driver_rows(conn, sql, list(suids))
    return {
        row[0]: DeviceSensor(row[0], row[1], bool(row[2]), *row[3:]) for row in rows
    }


COUNT_NEW = Prepared(
    update(sensors)
    .where(sensors.c.suid == bindparam("key"))
    .values(
        reading_count=sensors.c.reading_count + bindparam("n", type_=BigInteger),
        first_ts=case(
            (
                sensors.c.first_ts.is_(None)
                | (sensors.c.first_ts > bindparam("first", type_=BigInteger)),
                bindparam("first", type_=BigInteger),
            ),
            else_=sensors.c.first_ts,
        ),
        last_ts=case(
            (
                sensors.c.last_ts.is_(None)
                | (sensors.c.last_ts < bindparam("last", type_=BigInteger)),
                bindparam("last", type_=BigInteger),
            ),
            else_=sensors.c.last_ts,
        ),
    )
)


def count_new_readings(
    conn: Connection, suid: str, keys: Sequence[tuple[int, int]]
) -> None:
    """Keep the sensor's reading count and first/last reading time up to date."""
    if not keys:
        return
    times = [ts for ts, _ in keys]
    COUNT_NEW.execute(
        conn, {"key": suid, "n": len(keys), "first": min(times), "last": max(times)}
    )


def count_new_readings_of(
    conn: Connection, counts: Sequence[tuple[str, Sequence[tuple[int, int]]]]
) -> None:
    """:func:`count_new_readings` for several sensors in one UPDATE.

    A firmware request writes a few sensors at once (an airrohr node is four); one
    ``UPDATE … FROM (VALUES …)`` keeps that one round trip (SQLite 3.33+, PostgreSQL).
    """
    times: dict[str, list[int]] = {}
    for suid, keys in counts:
        if keys:
            times.setdefault(suid, []).extend(ts for ts, _ in keys)
    rows = [(suid, len(ts), min(ts), max(ts)) for suid, ts in times.items()]
    if len(rows) <= 1:
        for suid, n, first, last in rows:
            COUNT_NEW.execute(conn, {"key": suid, "n": n, "first": first, "last": last})
        return
    mark = placeholders(conn, 1)
    number = f"CAST({mark} AS BIGINT)"
    value = f"({mark}, {number}, {number}, {number})"
    sql = (
        "WITH v (suid, n, lo, hi) AS (VALUES " + ", ".join([value] * len(rows)) + ") "
        "UPDATE sensors SET reading_count = sensors.reading_count + v.n, "
        "first_ts = CASE WHEN sensors.first_ts IS NULL OR sensors.first_ts > v.lo "
        "THEN v.lo ELSE sensors.first_ts END, "
        "last_ts = CASE WHEN sensors.last_ts IS NULL OR sensors.last_ts < v.hi "
        "THEN v.hi ELSE sensors.last_ts END "
        "FROM v WHERE sensors.suid = v.suid"
    )
    driver_rows(conn, sql, [p for row in rows for p in row])


def list_sensors(
    conn: Connection,
    alias: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Every sensor by SUID; with ``alias``, those its lookup finds (see
    :mod:`co2logserver.store.aliases`: an exact match on an index).

    ``after`` (the last SUID of the previous page) and ``limit`` page the list.
    """
    statement = select(sensors)
    order = sensors.c.suid
    if alias is not None:
        found = aliases.matching_suids(alias).subquery()
        statement = statement.join(found, found.c.suid == sensors.c.suid)
        order = found.c.suid
    statement = statement.order_by(order)
    if after is not None:
        statement = statement.where(order > after)
    if limit is not None:
        statement = statement.limit(limit)
    return list(conn.execute(statement))


def describe_device(
    conn: Connection,
    suid: str,
    sensor: Row | DeviceSensor | None,
    alias: str,
    location: tuple[float, float, float | None] | None,
    now: int,
) -> None:
    """Keep a protocol sensor's alias and the private location its device reported.

    ``sensor`` is its row as read before (``None`` for one created just now).
    """
    values: dict[str, Any] = {}
    if sensor is None or sensor.alias != alias:
        values["alias"] = alias
    if location is not None:
        latitude, longitude, elevation = location
        known = (
            (None, None, None)
            if sensor is None
            else (sensor.latitude, sensor.longitude, sensor.elevation)
        )
        if known[:2] != (latitude, longitude) or (
            elevation is not None and known[2] != elevation
        ):
            values.update(latitude=latitude, longitude=longitude, updated_at=now)
            if elevation is not None:
                values["elevation"] = elevation
    if values:
        conn.execute(update(sensors).where(sensors.c.suid == suid).values(**values))
    if "alias" in values:
        aliases.set_alias(conn, suid, alias)

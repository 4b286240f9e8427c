"""SQL of the daily archives: which days have readings, and one day's readings.

A day is read one registration at a time with the read-back's range scan of the
primary key (``history.registration_readings``), so it costs an index seek per
registration and never a scan of the whole table, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sqlalchemy import Connection, func, or_, select

from co2logserver.store.history import registration_readings, stream
from co2logserver.store.schema import registrations, sensor_profiles, sensors
from co2logserver.store.selection import ReadingSelection


class DayRegistration(NamedTuple):
    """A registration that may hold readings of a day, with its sensor's metadata.

    The location is the sensor's exact one: only ``co2logserver.archive`` sees it,
    and it writes the public (rounded) one.
    """

    registration_id: int
    suid: str
    secure: bool
    alias: str | None
    latitude: float | None
    longitude: float | None
    elevation: float | None
    location_public: bool


def first_reading_time(conn: Connection) -> int | None:
    """The earliest reading's time (UNIX seconds) by the sensors' counters, or None.

    ``sensors.first_ts`` is kept by every write, so this reads one row per sensor
    instead of the readings.
    """
    return conn.execute(select(func.min(sensors.c.first_ts))).scalar()


def day_registrations(conn: Connection, start: int, end: int) -> list[DayRegistration]:
    """Registrations whose sensor has readings between ``start`` and ``end``, in order.

    A sensor whose first and last reading both lie outside the range holds none in
    it; one without counters (an old database) is read anyway.
    """
    statement = (
        select(
            registrations.c.id,
            registrations.c.suid,
            registrations.c.secure,
            sensors.c.alias,
            sensors.c.latitude,
            sensors.c.longitude,
            sensors.c.elevation,
            sensor_profiles.c.location_public,
        )
        .outerjoin(sensors, sensors.c.suid == registrations.c.suid)
        .outerjoin(sensor_profiles, sensor_profiles.c.suid == registrations.c.suid)
        .where(
            or_(
                sensors.c.first_ts.is_(None),
                sensors.c.last_ts.is_(None),
                (sensors.c.first_ts < end) & (sensors.c.last_ts >= start),
            )
        )
        .order_by(registrations.c.suid, registrations.c.id)
    )
    return [
        DayRegistration(*row[:2], bool(row[2]), *row[3:7], row[7] is not False)
        for row in conn.execute(statement)
    ]


def day_readings(
    conn: Connection, registration: DayRegistration, start: int, end: int
) -> Iterator[tuple[int, int, float]]:
    """``(ts, type, value)`` of one registration's readings in the range, in order.

    Fetched in chunks (a day of a busy sensor is not held in memory at once).
    """
    selection = ReadingSelection(registration.suid, start, end)
    statement = registration_readings(
        registration.registration_id, selection, None, 2**62
    )
    for row in stream(conn, statement):
        yield row[1], row[2], row[3]

"""The ``build-rollups`` builder's steps, and the raw horizon that keeps them honest.

A step replaces whole windows of one registration's hourly rollups by what its raw
readings give, in one short transaction that also records where the next step
starts (:class:`.rollups.State`).

Retention deletes raw readings but keeps their rollups: they are then the only
record of those hours. So every retention batch raises the *raw horizon*
(:func:`raise_raw_horizon`, in the transaction that deletes), the first hour whose
readings are all still stored, and a build never deletes or recomputes a rollup of
an hour before it, ``--restart`` included.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, func, insert, select, update

from co2logserver.store.rollups import (
    HOUR,
    STATE,
    State,
    hour_of,
    state,
    upsert,
)
from co2logserver.store.schema import (
    readings,
    registrations,
    rollups_hourly,
    rollups_state,
    sensors,
)

#: The ``rollups_state`` row whose ``next_hour`` is the raw horizon.
HORIZON = "raw_horizon"
#: Hours of one registration the builder reads with one statement.
BUILD_WINDOW = 24 * 7 * HOUR


def raw_horizon(conn: Connection) -> int:
    """The first hour (UNIX seconds) from which no raw reading was deleted; 0 when
    retention never deleted any."""
    found = conn.execute(
        select(rollups_state.c.next_hour).where(rollups_state.c.name == HORIZON)
    ).scalar()
    return int(found or 0)


def raise_raw_horizon(conn: Connection, deleted_before: int) -> None:
    """Record that raw readings before ``deleted_before`` may be gone: the hours up
    to the one holding it keep their rollups whatever a build does."""
    horizon = hour_of(deleted_before - 1) + HOUR
    current = conn.execute(
        select(rollups_state.c.next_hour).where(rollups_state.c.name == HORIZON)
    ).first()
    now = int(time.time())
    if current is None:
        values = {"built": True, "next_hour": horizon, "updated_at": now}
        conn.execute(insert(rollups_state).values(name=HORIZON, **values))
    elif (current[0] or 0) < horizon:
        conn.execute(
            update(rollups_state)
            .where(rollups_state.c.name == HORIZON)
            .values(next_hour=horizon, updated_at=now)
        )


def restart(conn: Connection) -> None:
    """Forget every rollup the raw readings can give again and build from the start
    (``build-rollups --restart``); those of hours before the raw horizon stay."""
    kept = rollups_hourly.c.hour < raw_horizon(conn)
    conn.execute(rollups_hourly.delete().where(~kept))
    save(conn, State(False, 0, 0))


def save(conn: Connection, new: State) -> None:
    """Write the builder's state."""
    conn.execute(
        update(rollups_state)
        .where(rollups_state.c.name == STATE)
        .values(
            built=new.built,
            next_registration=new.next_registration,
            next_hour=new.next_hour,
            updated_at=int(time.time()),
        )
    )


def lock_readings(conn: Connection) -> None:
    """Hold ingest back for one builder step (SQLite: the write lock does).

    On PostgreSQL a step's snapshot must not miss readings whose transaction has
    already added them to the rollups the step replaces; SHARE mode waits for
    open ingest transactions and blocks new ones until the step commits.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE readings IN SHARE MODE")


def build_step(conn: Connection, budget: int) -> tuple[int, State]:
    """Rebuild the next ``budget`` or so readings' rollups; return the readings done
    and the new state (``built`` after the last registration).

    One step is one transaction that replaces whole windows of one registration's
    hours, so an interrupted build resumes where the last step committed.
    """
    lock_readings(conn)
    current = state(conn)
    if current is None or current.built:
        return 0, current or State(True, None, None)
    registration, hour = current.next_registration or 0, current.next_hour or 0
    done = 0
    while done < budget:
        first = first_reading(conn, registration, hour)
        if first is None:
            following = next_registration(conn, registration)
            if following is None:
                finished = State(True, None, None)
                save(conn, finished)
                return done, finished
            registration, hour = following, 0
            continue
        start = hour_of(first)
        done += rebuild_window(conn, registration, start, start + BUILD_WINDOW)
        hour = start + BUILD_WINDOW
    progress = State(False, registration, hour)
    save(conn, progress)
    return done, progress


def first_reading(conn: Connection, registration: int, since: int) -> int | None:
    """The time of the first reading of ``registration`` at or after ``since``."""
    return conn.execute(
        select(func.min(readings.c.ts)).where(
            readings.c.registration_id == registration, readings.c.ts >= since
        )
    ).scalar()


def next_registration(conn: Connection, after: int) -> int | None:
    """The registration after ``after`` in id order (``after`` 0: the first)."""
    return conn.execute(
        select(func.min(registrations.c.id)).where(registrations.c.id > after)
    ).scalar()


def rebuild_window(conn: Connection, registration: int, start: int, end: int) -> int:
    """Replace the rollups of ``registration``'s hours in ``[start, end)`` by what
    its raw readings give; return the number of readings read. Hours before the
    raw horizon are left as they are: their readings may be gone."""
    start = max(start, raw_horizon(conn))
    if start >= end:
        return 0
    hour = (readings.c.ts - readings.c.ts % HOUR).label("hour")
    statement = (
        select(
            readings.c.type,
            hour,
            func.count(),
            func.min(readings.c.value),
            func.max(readings.c.value),
            func.sum(readings.c.value),
        )
        .where(
            readings.c.registration_id == registration,
            readings.c.ts >= start,
            readings.c.ts < end,
        )
        .group_by(readings.c.type, hour)
    )
    rows = [(registration, *row) for row in conn.execute(statement)]
    conn.execute(
        rollups_hourly.delete().where(
            rollups_hourly.c.registration_id == registration,
            rollups_hourly.c.hour >= start,
            rollups_hourly.c.hour < end,
        )
    )
    upsert(conn, rows)
    return sum(row[3] for row in rows)


def build_total(conn: Connection) -> tuple[int, int]:
    """``(readings already rolled up, readings in all)`` for the progress bar.

    The total is the sensors' reading counters (no scan of the readings).
    """
    total = conn.execute(select(func.coalesce(func.sum(sensors.c.reading_count), 0)))
    current = state(conn)
    done = 0
    if current is not None and current.next_registration:
        r = rollups_hourly.c
        reached = (r.registration_id < current.next_registration) | (
            (r.registration_id == current.next_registration)
            & (r.hour < (current.next_hour or 0))
        )
        done = conn.execute(
            select(func.coalesce(func.sum(r.count), 0)).where(reached)
        ).scalar_one()
    return int(done), int(total.scalar_one())

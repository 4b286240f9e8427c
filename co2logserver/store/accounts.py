"""SQL of the owners' side (§12): accounts, ownership, claim codes, profiles,
rejected requests, the geocoder's cache and installation values.

Password hashes, claim-code hashes and the session key go through
:func:`~co2logserver.store.sensors.quiet` or bound parameters of an engine built
with ``hide_parameters``, so no log level shows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from co2logserver.store.schema import (
    claim_codes,
    geocode_cache,
    invitations,
    readings,
    rejected_requests,
    sensor_owners,
    sensor_profiles,
    sensors,
    users,
)
from co2logserver.store.sensors import quiet

#: Rejected requests kept per sensor.
REJECTIONS_KEPT = 20


def _insert(conn: Connection, table):
    """The dialect's INSERT, which knows ``ON CONFLICT``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def insert_new(conn: Connection, table, values: dict[str, Any]) -> bool:
    """Insert a row unless its key exists; whether it was inserted.

    ``ON CONFLICT DO NOTHING`` makes two racing writers safe: exactly one inserts.
    """
    statement = _insert(conn, table).values(**values).on_conflict_do_nothing()
    return conn.execute(statement).rowcount == 1


def upsert(conn: Connection, table, values: dict[str, Any], key: str) -> None:
    """Insert a row, or replace the other columns of the row with its key."""
    statement = _insert(conn, table).values(**values)
    changed = {k: v for k, v in values.items() if k != key}
    conn.execute(statement.on_conflict_do_update(index_elements=[key], set_=changed))


# ------------------------------------------------------------------ installation


def installation_value(conn: Connection, name: str) -> str | None:
    """An installation value (e.g. the session key), or ``None``."""
    row = quiet(conn, "SELECT value FROM installation WHERE name = ?", (name,))
    return row[0] if row else None


def keep_installation_value(conn: Connection, name: str, value: str) -> str:
    """Store ``value`` unless one is stored already; return the value that stands."""
    quiet(
        conn,
        "INSERT INTO installation (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (name, value),
    )
    return installation_value(conn, name) or value


# ---------------------------------------------------------------------- users


def create_user(
    conn: Connection, username: str, password_hash: str, is_admin: bool, now: int
) -> int | None:
    """Insert an account; its id, or ``None`` when the name is taken."""
    statement = (
        _insert(conn, users)
        .values(
            username=username,
            password_hash=password_hash,
            disabled=False,
            is_admin=is_admin,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(users.c.id)
    )
    row = conn.execute(statement).first()
    return row[0] if row else None


def user_by_id(conn: Connection, user_id: int) -> Row | None:
    """The account with ``user_id``, or ``None``."""
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def user_by_name(conn: Connection, username: str) -> Row | None:
    """The account named ``username`` (lower-cased), or ``None``."""
    return conn.execute(select(users).where(users.c.username == username)).first()


def update_user(conn: Connection, user_id: int, **values: Any) -> bool:
    """Change an account's columns; whether it exists."""
    result = conn.execute(update(users).where(users.c.id == user_id).values(**values))
    return result.rowcount == 1


def add_invitation(conn: Connection, code_hash: str, now: int) -> int:
    """Keep a new invitation (the hash of its token); its id."""
    result = conn.execute(
        insert(invitations).values(code_hash=code_hash, issued_at=now)
    )
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return key[0]


def unused_invitation(conn: Connection, invitation_id: int) -> str | None:
    """The token hash of an unused invitation, or ``None``."""
    row = quiet(
        conn,
        "SELECT code_hash FROM invitations WHERE id = ? AND used_by IS NULL",
        (invitation_id,),
    )
    return row[0] if row else None


def use_invitation(conn: Connection, invitation_id: int, user_id: int) -> bool:
    """Spend an unused invitation for ``user_id``; whether it was still unused."""
    result = conn.execute(
        update(invitations)
        .where(invitations.c.id == invitation_id, invitations.c.used_by.is_(None))
        .values(used_by=user_id)
    )
    return result.rowcount == 1


# ----------------------------------------------------------- ownership, claims


def set_claim_code(conn: Connection, suid: str, code_hash: str, now: int) -> None:
    """Keep an operator-issued claim code (its hash), replacing an earlier one."""
    upsert(
        conn,
        claim_codes,
        {"suid": suid, "code_hash": code_hash, "issued_at": now},
        "suid",
    )


def claim_code_hash(conn: Connection, suid: str) -> str | None:
    """The hash of the operator-issued claim code of ``suid``, or ``None``."""
    row = quiet(conn, "SELECT code_hash FROM claim_codes WHERE suid = ?", (suid,))
    return row[0] if row else None


def forget_claim_code(conn: Connection, suid: str) -> None:
    """An operator-issued code works once: drop it after a claim."""
    conn.execute(delete(claim_codes).where(claim_codes.c.suid == suid))


def owner_of(conn: Connection, suid: str) -> int | None:
    """The id of the account owning ``suid``, or ``None``."""
    row = conn.execute(
        select(sensor_owners.c.user_id).where(sensor_owners.c.suid == suid)
    ).first()
    return row[0] if row else None


def add_owner(conn: Connection, suid: str, user_id: int, now: int) -> bool:
    """Make ``user_id`` the owner unless the sensor has one; whether it did."""
    values = {"suid": suid, "user_id": user_id, "claimed_at": now}
    return insert_new(conn, sensor_owners, values)


def set_owner(conn: Connection, suid: str, user_id: int, now: int) -> None:
    """Give the sensor to ``user_id`` (the operator's transfer)."""
    values = {"suid": suid, "user_id": user_id, "claimed_at": now}
    upsert(conn, sensor_owners, values, "suid")


def owned_sensors(conn: Connection, user_id: int) -> list[Row]:
    """The sensors of an account with their profiles, by SUID."""
    statement = (
        select(
            sensors,
            sensor_profiles.c.name,
            sensor_profiles.c.address,
            sensor_profiles.c.location_public,
        )
        .join(sensor_owners, sensor_owners.c.suid == sensors.c.suid)
        .outerjoin(sensor_profiles, sensor_profiles.c.suid == sensors.c.suid)
        .where(sensor_owners.c.user_id == user_id)
        .order_by(sensors.c.suid)
    )
    return list(conn.execute(statement))


# ------------------------------------------------------------------- profiles


def profile(conn: Connection, suid: str) -> Row | None:
    """What the owner set for ``suid``, or ``None``."""
    return conn.execute(
        select(sensor_profiles).where(sensor_profiles.c.suid == suid)
    ).first()


def save_profile(conn: Connection, suid: str, now: int, **values: Any) -> None:
    """Create or change the profile of ``suid``."""
    current = profile(conn, suid)
    merged: dict[str, Any] = {
        "name": None,
        "address": None,
        "location_public": True,
        "latitude": None,
        "longitude": None,
        "elevation": None,
    }
    if current is not None:
        merged.update(current._mapping)
    merged.update(values, suid=suid, updated_at=now)
    upsert(conn, sensor_profiles, merged, "suid")


def hidden_locations(conn: Connection) -> set[str]:
    """SUIDs whose owner hid the location from every public output."""
    statement = select(sensor_profiles.c.suid).where(
        sensor_profiles.c.location_public.is_(False)
    )
    return set(conn.scalars(statement))


def profile_names(conn: Connection) -> dict[str, str]:
    """Display names the owners gave their sensors, by SUID."""
    statement = select(sensor_profiles.c.suid, sensor_profiles.c.name).where(
        sensor_profiles.c.name.is_not(None)
    )
    return {key: value for key, value in conn.execute(statement)}


def set_location(
    conn: Connection,
    suid: str,
    latitude: float,
    longitude: float,
    elevation: float | None,
    now: int,
) -> None:
    """Keep the sensor's exact (private) position."""
    conn.execute(
        update(sensors)
        .where(sensors.c.suid == suid)
        .values(
            latitude=latitude, longitude=longitude, elevation=elevation, updated_at=now
        )
    )


def keep_owner_location(conn: Connection, suid: str, now: int) -> None:
    """Put the owner's position back after a device's PUT replaced the metadata."""
    row = conn.execute(
        select(
            sensor_profiles.c.latitude,
            sensor_profiles.c.longitude,
            sensor_profiles.c.elevation,
        ).where(sensor_profiles.c.suid == suid, sensor_profiles.c.latitude.is_not(None))
    ).first()
    if row is not None:
        set_location(conn, suid, row.latitude, row.longitude, row.elevation, now)


def readings_since(conn: Connection, registration_ids: Iterable[int], since: int):
    """Readings stored since ``since`` per registration: ``{id: count}``."""
    ids = list(registration_ids)
    if not ids:
        return {}
    statement = (
        select(readings.c.registration_id, func.count())
        .where(readings.c.registration_id.in_(ids), readings.c.ts >= since)
        .group_by(readings.c.registration_id)
    )
    return {key: value for key, value in conn.execute(statement)}


# ----------------------------------------------------------- rejected requests


def record_rejection(conn: Connection, values: dict[str, Any]) -> bool:
    """Keep a rejected request of an existing sensor; prune to the last few.

    Nothing is kept for a SUID that does not exist, so a flood of made-up SUIDs
    grows nothing. Returns whether a row was kept.
    """
    suid = values["suid"]
    if not conn.execute(select(sensors.c.suid).where(sensors.c.suid == suid)).first():
        return False
    conn.execute(insert(rejected_requests).values(**values))
    newest = list(
        conn.scalars(
            select(rejected_requests.c.id)
            .where(rejected_requests.c.suid == suid)
            .order_by(rejected_requests.c.id.desc())
            .limit(REJECTIONS_KEPT)
        )
    )
    if len(newest) == REJECTIONS_KEPT:
        conn.execute(
            delete(rejected_requests).where(
                rejected_requests.c.suid == suid, rejected_requests.c.id < newest[-1]
            )
        )
    return True


def rejections(conn: Connection, suids: Iterable[str]) -> dict[str, list[Row]]:
    """The kept rejected requests of ``suids``, newest first, by SUID."""
    wanted = list(suids)
    found: dict[str, list[Row]] = {suid: [] for suid in wanted}
    if not wanted:
        return found
    statement = (
        select(rejected_requests)
        .where(rejected_requests.c.suid.in_(wanted))
        .order_by(rejected_requests.c.id.desc())
    )
    for row in conn.execute(statement):
        found[row.suid].append(row)
    return found


# ------------------------------------------------------------- geocoder cache


def cached_place(conn: Connection, query: str, since: int) -> Row | None:
    """A geocoder answer for ``query`` fetched after ``since``, or ``None``."""
    return conn.execute(
        select(geocode_cache).where(
            geocode_cache.c.query == query, geocode_cache.c.fetched_at >= since
        )
    ).first()


def cache_place(conn: Connection, query: str, place: dict[str, Any]) -> None:
    """Keep a geocoder answer (``latitude`` None: nothing was found)."""
    upsert(conn, geocode_cache, {"query": query, **place}, "query")

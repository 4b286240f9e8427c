"""What an owner sees and sets of their sensors (SPEC §12), without Flask.

The owner (and an admin) sees the exact position, the private address and the
rejected requests; everything public keeps going through
:func:`co2logserver.readings.location_view`, rounded, or hidden when the owner
says so. A page's form is validated whole before anything is written.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any

from co2logserver import auth, geocode
from co2logserver.accounts import User
from co2logserver.errors import BadRequest, NotFound
from co2logserver.readings import location_view
from co2logserver.store import Store
from co2logserver.store import accounts as sql
from co2logserver.store import sensors as sensor_sql

NAME_MAX = 80
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ADDRESS_MAX = 300
#: Range of each coordinate, as the sensor API checks a PUT's location (§6).
RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}


def day_start(now: float) -> int:
    """Midnight UTC of the day of ``now``."""
    return int(now // 86400 * 86400)


def status_view(row, settings: Mapping[str, Any], counts, rejected) -> dict:
    """One owned sensor as the "My sensors" page shows it."""
    now = time.time()
    decimals = settings["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]
    silent_before = now - settings["CO2LOGSERVER_SILENT_AFTER"]
    public = row.location_public is not False
    return {
        "suid": row.suid,
        "name": row.name,
        "address": row.address,
        "secure": bool(row.secure),
        "manufacturer": row.manufacturer,
        "model": row.model,
        "last_reading": row.last_ts,
        "silent": row.last_ts is None or row.last_ts < silent_before,
        "reading_count": row.reading_count,
        "readings_today": counts.get(row.registration_id, 0),
        "location": location_view(row, decimals, exact=True),
        "public_location": location_view(row, decimals, exact=False, public=public),
        "location_public": public,
        "rejected": [dict(r._mapping) for r in rejected.get(row.suid, [])],
    }


def owned(store: Store, settings: Mapping[str, Any], user: User) -> list[dict]:
    """Every sensor of ``user`` with its status and last rejected requests."""
    with store.reading() as conn:
        rows = sql.owned_sensors(conn, user.id)
        counts = sql.readings_since(
            conn, [r.registration_id for r in rows], day_start(time.time())
        )
        rejected = sql.rejections(conn, [r.suid for r in rows])
    return [status_view(row, settings, counts, rejected) for row in rows]


def owned_sensor(
    store: Store, settings: Mapping[str, Any], user: User, suid: str
) -> dict:
    """One sensor of ``user`` (any sensor for an admin) with its status.

    :raise NotFound: for a malformed SUID, or one the user does not own (the
        same answer, so the page reveals nothing of other people's sensors).
    """
    suid = checked_suid(suid)
    with store.reading() as conn:
        owner = sql.owner_of(conn, suid)
        if owner != user.id and not (user.is_admin and owner is not None):
            raise NotFound("You own no sensor with this SUID.")
        row = next(r for r in sql.owned_sensors(conn, owner) if r.suid == suid)
        counts = sql.readings_since(conn, [row.registration_id], day_start(time.time()))
        rejected = sql.rejections(conn, [suid])
    return status_view(row, settings, counts, rejected)


def checked_suid(text: str) -> str:
    """A SUID from a URL; a malformed one is "not yours" like any other.

    :raise NotFound: for a malformed SUID.
    """
    try:
        return auth.parse_suid(text)
    except BadRequest:
        raise NotFound("You own no sensor with this SUID.") from None


def parse_coordinate(text: str | None, name: str) -> float:
    """A latitude or longitude from a form, in its range.

    :raise BadRequest: naming the field.
    """
    low, high = RANGES[name]
    try:
        value = float((text or "").strip().replace(",", "."))
    except ValueError:
        raise BadRequest(f"The {name} must be a number of degrees.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"The {name} must be between {low:g} and {high:g} degrees.")
    return value


def parse_elevation(text: str | None) -> float | None:
    """An optional elevation in metres.

    :raise BadRequest: for one that is not a number between -500 and 9000.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise BadRequest("The elevation must be a number of metres.") from None
    if not math.isfinite(value) or not -500 <= value <= 9000:
        raise BadRequest("The elevation must be between -500 and 9000 metres.")
    return value


def parse_optional_position(form: Mapping[str, str]) -> bool:
    """Whether a form gives a position (latitude or longitude filled in).

    :raise BadRequest: naming the field when the position given is not valid.
    """
    if not (
        (form.get("latitude") or "").strip() or (form.get("longitude") or "").strip()
    ):
        return False
    parse_coordinate(form.get("latitude"), "latitude")
    parse_coordinate(form.get("longitude"), "longitude")
    parse_elevation(form.get("elevation"))
    return True


def set_position(
    store: Store, user: User, suid: str, form: Mapping[str, str], settings
) -> None:
    """Keep the position the owner typed or clicked (lat/lon, elevation).

    :raise BadRequest: naming the field that is wrong; nothing is stored then.
    :raise NotFound: for a sensor the user does not own.
    """
    view = owned_sensor(store, settings, user, suid)
    latitude = parse_coordinate(form.get("latitude"), "latitude")
    longitude = parse_coordinate(form.get("longitude"), "longitude")
    elevation = parse_elevation(form.get("elevation"))
    with store.transaction() as conn:
        keep_position(conn, view["suid"], latitude, longitude, elevation, None)


def set_address(
    store: Store, user: User, suid: str, address: str, settings
) -> geocode.Place:
    """Geocode ``address`` and keep both the position and the (private) address.

    :raise BadRequest: for an empty or too long address.
    :raise geocode.GeocoderError: when the geocoder is off, fails, hangs or finds
        nothing; nothing is stored then.
    :raise NotFound: for a sensor the user does not own.
    """
    view = owned_sensor(store, settings, user, suid)
    address = " ".join((address or "").split())
    if not address:
        raise BadRequest("Enter an address to look up.")
    if len(address) > ADDRESS_MAX:
        raise BadRequest(f"The address must be at most {ADDRESS_MAX} characters.")
    place = geocode.search(store, settings, address)
    with store.transaction() as conn:
        keep_position(
            conn, view["suid"], place.latitude, place.longitude, None, address
        )
    return place


def keep_position(
    conn, suid: str, latitude, longitude, elevation, address: str | None
) -> None:
    """The owner's position, in the sensor row and (to outlive a PUT) the profile.

    A position typed or clicked replaces the address it was looked up from.
    """
    sql.set_location(conn, suid, latitude, longitude, elevation, now())
    sql.save_profile(
        conn,
        suid,
        now(),
        latitude=latitude,
        longitude=longitude,
        elevation=elevation,
        address=address,
    )


def set_profile(
    store: Store, user: User, suid: str, form: Mapping[str, str], settings
) -> None:
    """Keep the display name and whether the rounded location is public.

    :raise BadRequest: for a name that is too long or has control characters.
    :raise NotFound: for a sensor the user does not own.
    """
    view = owned_sensor(store, settings, user, suid)
    name = " ".join(CONTROL.sub("", form.get("name") or "").split()) or None
    if name is not None and len(name) > NAME_MAX:
        raise BadRequest(f"The name must be at most {NAME_MAX} characters.")
    public = form.get("location_public") in ("on", "true", "1", "yes")
    with store.transaction() as conn:
        sql.save_profile(conn, view["suid"], now(), name=name, location_public=public)


def sensor_exists(store: Store, suid: str) -> bool:
    """Whether a sensor with this (lower-case) SUID exists."""
    with store.reading() as conn:
        return sensor_sql.get_sensor(conn, suid) is not None


def now() -> int:
    """The time in whole UNIX seconds."""
    return int(time.time())

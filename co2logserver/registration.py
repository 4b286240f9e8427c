"""Register sensors: check the metadata of a ``PUT``, issue SECRETs, reset sensors.

A registration makes a SUID secure: its SECRET is returned once and never logged,
and a new registration ends the old one at once. Who may register a secure sensor
again is decided by :mod:`co2logserver.verify`. No Flask here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from co2logserver import auth, verify
from co2logserver.errors import BadRequest, NotFound, PayloadTooLarge, raise_errors
from co2logserver.parsers import parse_json_document
from co2logserver.store import Store
from co2logserver.store import accounts as accounts_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.columns import short_repr, text_problem

LOCATION_RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}


def check_number(value: Any, name: str, low: float, high: float) -> str | None:
    """Return why a location number is refused, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"location.{name} must be a number, not {short_repr(value)}"
    if not math.isfinite(value) or not low <= value <= high:
        return f"location.{name} must lie between {low:g} and {high:g}"
    return None


def check_location(location: Any) -> list[str]:
    """Latitude and longitude are needed and range-checked; elevation is optional."""
    if not isinstance(location, dict):
        return ["location must be an object with latitude and longitude"]
    problems: list[str | None] = [
        f"location.{key}: unexpected key"
        for key in location
        if key not in ("latitude", "longitude", "elevation")
    ]
    for name, (low, high) in LOCATION_RANGES.items():
        if name not in location:
            problems.append(f"location.{name} is missing")
        else:
            problems.append(check_number(location[name], name, low, high))
    if location.get("elevation") is not None:
        problems.append(check_number(location["elevation"], "elevation", -1e4, 1e5))
    return [p for p in problems if p]


def check_metadata(body: bytes, settings: Mapping) -> dict[str, Any]:
    """Check a registration body; return the columns to store.

    :raise PayloadTooLarge: for metadata over ``CO2LOGSERVER_MAX_METADATA_BYTES``.
    :raise BadRequest: listing every bad field.
    """
    limit = settings["CO2LOGSERVER_MAX_METADATA_BYTES"]
    if len(body) > limit:
        raise PayloadTooLarge(
            f"The registration metadata has {len(body)} bytes; at most {limit}"
        )
    document = parse_json_document(body) if body.strip() else {}
    if not isinstance(document, dict):
        raise BadRequest("The registration body must be a JSON object (or empty)")
    problems = [
        f"{key} must be a string"
        for key in ("manufacturer", "model")
        if document.get(key) is not None and not isinstance(document[key], str)
    ]
    texts = [(k, document.get(k)) for k in ("manufacturer", "model")]
    problems += [
        f"{key} {problem}"
        for key, value in texts
        if isinstance(value, str) and (problem := text_problem(value))
    ]
    location = document.get("location")
    if location is not None:
        problems += check_location(location)
    raise_errors(problems)
    extra = {
        k: v
        for k, v in document.items()
        if k not in ("manufacturer", "model", "location")
    }
    location = location or {}
    return {
        "manufacturer": document.get("manufacturer"),
        "model": document.get("model"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "elevation": location.get("elevation"),
        "extra": json.dumps(extra, separators=(",", ":")) if extra else None,
    }


def register_sensor(
    store: Store,
    settings: Mapping,
    suid: str,
    body: bytes,
    authorization: str | None = None,
    raw_body: bytes | None = None,
) -> str:
    """Register (or re-register) a sensor as secure; return its new SECRET.

    The SECRET is returned once and never logged. A new registration ends the old
    one at once: its SECRET stops working, its readings keep their registration.
    SUIDs are public, so by default (``"signed"``) only the holder of the current
    SECRET may re-register a secure sensor: an unsigned PUT cannot take it over.

    :raise BadRequest: 400 for a bad SUID or metadata.
    :raise Conflict: 409 when re-registration is refused.
    :raise StorageUnavailable: 503 when the database is down.
    """
    suid = auth.parse_suid(suid)
    metadata = check_metadata(body, settings)
    secret = auth.new_secret()
    now = int(time.time())
    with store.transaction() as conn:
        sensor = sensor_sql.sensor_to_write(conn, suid)
        if sensor and sensor.secure:
            verify.check_reregistration(
                conn, sensor.registration_id, settings, authorization, raw_body or body
            )
        registration = sensor_sql.new_registration(conn, suid, True, secret, now)
        sensor_sql.forget_old_secrets(conn, suid, registration)
        sensor_sql.save_sensor(
            conn, suid, registration, True, metadata, now, exists=sensor is not None
        )
        if sensor is not None:  # a position its owner set wins (§12)
            accounts_sql.keep_owner_location(conn, suid, now)
    # This worker verifies signed posts from its cache while the database is away
    # (SPEC §10): the new registration replaces what it knew.
    store.registrations[suid] = verify.Credentials(registration, True, secret)
    return secret


def register_device(store: Store, alias: str) -> tuple[str, list[str]]:
    """Operator registration of a protocol device by its alias (SPEC §9).

    Every sensor the alias finds (all of an airrohr node's sensors for
    ``esp8266-1234567``) becomes secure under ONE new SECRET, because the firmware
    has one credential slot per device; a full device name that has not posted yet
    (``lorawan:0004a30b001c0530``) is registered under its SUID. Returns the
    SECRET and the SUIDs.

    :raise NotFound: when the alias names no sensor and is not a device name.
    """
    from co2logserver.devices import suid_for

    secret = auth.new_secret()
    now = int(time.time())
    with store.transaction() as conn:
        found = sensor_sql.list_sensors(conn, alias)
        if not found and ":" not in alias:
            raise NotFound(
                f"No sensor has the alias {alias!r}; give the full device name "
                "(e.g. airrohr:esp8266-1234567:SDS) to register one that has not "
                "posted yet"
            )
        targets: list[tuple[str, Any]] = [(row.suid, row) for row in found]
        targets = targets or [(suid_for(alias), None)]
        for suid, row in targets:
            sensor_sql.sensor_to_write(conn, suid)
            registration = sensor_sql.new_registration(conn, suid, True, secret, now)
            sensor_sql.forget_old_secrets(conn, suid, registration)
            sensor_sql.save_sensor(
                conn, suid, registration, True, None, now, exists=row is not None
            )
            if row is None:
                sensor_sql.describe_device(conn, suid, None, alias, None, now)
    for suid, _row in targets:
        store.registrations.pop(suid, None)  # read afresh by the next post
    return secret, [suid for suid, _ in targets]


def reset_sensor(store: Store, suid: str) -> bool:
    """Operator reset: end a sensor's secure registration so it may register again.

    Until it does, its unsigned readings are stored as unverified. Returns whether
    the sensor existed.
    """
    suid = auth.parse_suid(suid)
    now = int(time.time())
    with store.transaction() as conn:
        sensor = sensor_sql.sensor_to_write(conn, suid)
        if sensor is None:
            return False
        registration = sensor_sql.new_registration(conn, suid, False, None, now)
        sensor_sql.forget_old_secrets(conn, suid, registration)
        sensor_sql.save_sensor(conn, suid, registration, False, None, now, exists=True)
    store.registrations[suid] = verify.Credentials(registration, False)
    return True

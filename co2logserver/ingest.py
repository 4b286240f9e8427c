"""Validate and store what sensors send: the one path every protocol goes through.

HTTP (``/upload``, ``/v1``, ``/rogue/v1``) and MQTT call these functions. Each checks
the whole request first, naming every problem with its row or observation index,
then writes once: one request is one transaction, together with its outbox items.
What makes a request valid lives in :mod:`co2logserver.upload_checks` (a legacy
upload) and :mod:`co2logserver.observation_checks` (OpenSmog observations); this
module decides who may write and what is stored. No Flask here.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from co2logserver import auth, verify
from co2logserver.errors import PayloadTooLarge
from co2logserver.observation_checks import checked_payload
from co2logserver.parsers import Batch
from co2logserver.readings import BY_CODE
from co2logserver.store import Store, outbox
from co2logserver.store import sensors as sensor_sql
from co2logserver.upload_checks import normalise

# --------------------------------------------------------------------------------------
# Legacy uploads
# --------------------------------------------------------------------------------------


def automatic_values(
    settings: Mapping, matches: Mapping[str, str | None], now: float | None = None
) -> dict:
    """Upload time and checksum columns, the same for every row of an upload."""
    matched: str | None
    failed: str | None
    if settings["CO2LOGSERVER_CHECKSUM_SALTS"]:
        matched, failed = auth.checksum_columns(matches)
    else:
        matched = failed = None
    return {
        settings["CO2LOGSERVER_UPLOAD_TIME_COL"]: (
            datetime.datetime.now(datetime.UTC)
            if now is None
            else datetime.datetime.fromtimestamp(now, datetime.UTC)
        ),
        settings["CO2LOGSERVER_MATCHED_CHECKSUMS_COL"]: matched,
        settings["CO2LOGSERVER_FAILED_CHECKSUMS_COL"]: failed,
    }


def ingest_upload(
    store: Store,
    settings: Mapping,
    batch: Batch,
    matches: Mapping[str, str | None],
    now: float | None = None,
) -> int:
    """Validate and store a legacy upload; return how many rows were stored.

    ``now`` is the receive time (the spool's applier passes the spooled one).

    :raise PayloadTooLarge: for more rows than ``CO2LOGSERVER_MAX_ROWS``.
    :raise BadRequest: for bad names or values (nothing is stored).
    :raise StorageUnavailable: when the database is down (nothing is stored).
    """
    limit = settings["CO2LOGSERVER_MAX_ROWS"]
    if batch.length > limit:
        raise PayloadTooLarge(
            f"{batch.length} rows in one upload; at most {limit} "
            "(CO2LOGSERVER_MAX_ROWS)"
        )
    batch = normalise(batch, settings)
    if not batch.length:  # e.g. a CSV header alone: no row to store, no column to add
        return 0
    automatic = automatic_values(settings, matches, now)
    for name in automatic:  # the server sets these, as 0.1.2 did
        batch.columns.pop(name, None)
    with store.transaction() as conn:
        drop_refused_columns(store, conn, batch, settings)
        if not batch.columns and not settings["CO2LOGSERVER_ALLOW_EMPTY_ROWS"]:
            return 0
        store.data.add_missing_columns(conn, batch.columns, automatic)
        stored = store.data.insert(conn, batch, automatic)
        if settings["CO2LOGSERVER_OSEM_UPLOAD"]:
            rows = [{**row, **automatic} for row in batch.rows()]
            items = outbox.legacy_items(
                rows,
                settings["CO2LOGSERVER_OSEM_BOX_COL"],
                settings["CO2LOGSERVER_OSEM_BOX_COL_DEFAULT"],
            )
            outbox.enqueue(conn, outbox.LEGACY, items)
    return stored


def drop_refused_columns(store: Store, conn, batch: Batch, settings) -> None:
    """Drop new columns that ``CO2LOGSERVER_ACCEPT_NEW_COLUMN`` refuses (as 0.1.2)."""
    unknown = store.data.unknown(batch.columns)
    if unknown:
        store.data.reflect(conn)  # another worker may have added them meanwhile
        unknown = store.data.unknown(unknown)
    accept = settings["CO2LOGSERVER_ACCEPT_NEW_COLUMN"]
    for name in unknown:
        if not accept(name):
            del batch.columns[name]


# --------------------------------------------------------------------------------------
# OpenSmog readings
# --------------------------------------------------------------------------------------


def submit_readings(
    store: Store,
    settings: Mapping,
    suid: str,
    body: bytes,
    authorization: str | None,
    rogue_route: bool,
    raw_body: bytes | None = None,
    now: float | None = None,
) -> int:
    """Apply the authorization table of the OpenSmog API and store the readings.

    ``body`` is the payload (decompressed); ``raw_body`` the bytes as sent, which
    the OpenSmogHash covers; ``now`` the receive time (the spool's applier passes
    the time a request was spooled). Returns how many readings were new.

    :raise BadRequest: 400 for a bad SUID or payload.
    :raise BadOpenSmogHash: 401 for a wrong hash of a secure sensor.
    :raise Forbidden: 403 for a secure sensor without a hash, or on the rogue route.
    :raise PayloadTooLarge: 413 for too many observations.
    :raise StorageUnavailable: 503 when the database is down.
    """
    suid = auth.parse_suid(suid)
    now = time.time() if now is None else now
    observations, payload_error = checked_payload(body, settings, now)
    with store.transaction() as conn:
        sensor = sensor_sql.sensor_to_write(conn, suid)
        if sensor is None:
            credentials = None
        else:
            credentials = verify.credentials_of(conn, sensor)
            store.registrations[suid] = credentials
        fresh = True
        if credentials and credentials.secure:
            fresh = verify.check_secure_access(
                conn, credentials, settings, authorization, raw_body or body,
                rogue_route, now,
            )  # fmt: skip
        if payload_error:
            raise payload_error
        if not fresh:  # an OpenSmogHash2 retry of an accepted request
            return 0
        if credentials is None:
            registration = register_rogue(conn, suid, int(now))
        else:
            registration = credentials.registration_id
        values = [
            (obs.timestamp, code, value)
            for obs in observations
            for code, value in obs.readings.items()
        ]
        new = store_sensor_readings(conn, settings, suid, registration, values)
    return len(new)


def store_sensor_readings(
    conn,
    settings: Mapping,
    suid: str,
    registration: int,
    values,
    learned: Mapping[int, str] | None = None,
) -> list[tuple[int, int]]:
    """Write checked ``(ts, code, value)`` readings of one sensor; return new keys."""
    batch = SensorReadings(suid, registration, values, learned or {})
    return store_readings(conn, settings, [batch])[0]


@dataclass
class SensorReadings:
    """Checked readings of one sensor's registration, ready to be written."""

    suid: str
    registration: int
    values: Sequence[tuple[int, int, float]]
    #: Names of the codes the registry lacks (learned ones), for the outbox.
    learned: Mapping[int, str]


def store_readings(
    conn, settings: Mapping, batches: Sequence[SensorReadings]
) -> list[list[tuple[int, int]]]:
    """Write the readings of one or many sensors; return each one's new keys.

    Where every protocol's readings end: one INSERT for all of them, a reading
    stored before stays as it was (safe retries), each sensor's counts follow, and
    new readings go to the outbox in the same transaction.
    """
    rows = [
        (batch.registration, ts, code, value)
        for batch in batches
        for ts, code, value in batch.values
    ]
    fresh: dict[int, list[tuple[int, int]]] = {}
    for registration, ts, code in sensor_sql.insert_reading_rows(conn, rows):
        fresh.setdefault(registration, []).append((ts, code))
    news = [fresh.pop(batch.registration, []) for batch in batches]
    sensor_sql.count_new_readings_of(
        conn, [(batch.suid, new) for batch, new in zip(batches, news, strict=True)]
    )
    for batch, new in zip(batches, news, strict=True):
        if settings["CO2LOGSERVER_OSEM_UPLOAD"] and new:
            items = readings_items(batch.suid, batch.values, new, batch.learned)
            outbox.enqueue(conn, outbox.READINGS, items)
    return news


def register_rogue(conn, suid: str, now: int) -> int:
    """First use of an unknown SUID registers it as rogue (unverified)."""
    registration = sensor_sql.new_registration(conn, suid, False, None, now)
    sensor_sql.save_sensor(conn, suid, registration, False, None, now, exists=False)
    return registration


def readings_items(
    suid: str, values, new, learned: Mapping[int, str] | None = None
) -> list[tuple[str, dict]]:
    """One outbox item per observation time with its new readings."""
    learned = learned or {}
    fresh = set(new)
    by_time: dict[int, dict[str, float]] = {}
    for ts, code, value in values:
        if (ts, code) in fresh:
            name = BY_CODE[code].name if code in BY_CODE else learned[code]
            by_time.setdefault(ts, {})[name] = value
    return [
        (suid, {"timestamp": ts, "readings": r}) for ts, r in sorted(by_time.items())
    ]

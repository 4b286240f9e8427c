"""Validate and store what sensors send: the one path every protocol goes through.

HTTP (``/upload``, ``/v1``, ``/rogue/v1``) and MQTT call these functions. Each checks
the whole request first, naming every problem with its row or observation index,
then writes once: one request is one transaction, together with its outbox items.
No Flask here.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from co2logserver import auth, verify
from co2logserver.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
)
from co2logserver.parsers import Batch, parse_json_document
from co2logserver.readings import BY_CODE, QUANTITIES
from co2logserver.store import Store, outbox
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.columns import INT64, check_scalar, short_repr, text_problem

COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MAX_ERRORS = 20

EARLIEST_TIMESTAMP = 946684800  # 2000-01-01T00:00:00Z
#: Value types a column may hold (ints in range, floats finite).
PLAIN_TYPES = {int, float, str, type(None)}


def raise_errors(errors: Sequence[str], error_class: type[ApiError] = BadRequest):
    """Raise one error listing the first problems found."""
    if errors:
        more = (
            f" (and {len(errors) - MAX_ERRORS} more)"
            if len(errors) > MAX_ERRORS
            else ""
        )
        raise error_class("; ".join(errors[:MAX_ERRORS]) + more)


# --------------------------------------------------------------------------------------
# Legacy uploads
# --------------------------------------------------------------------------------------


def normalise(batch: Batch, settings: Mapping) -> Batch:
    """Lowercase and check column names and values; convert time columns.

    :raise BadRequest: listing every bad column name and value with its row.
    """
    errors: list[str] = []
    time_columns = {c.lower() for c in settings["CO2LOGSERVER_TIME_COLS"]}
    converter = settings["CO2LOGSERVER_TIME_CONVERTER"]
    columns: dict[str, list[Any]] = {}
    for name, values in batch.columns.items():
        column = name.strip().lower()
        if not COLUMN_NAME.fullmatch(column):
            errors.append(
                f"column name {short_repr(name)} is invalid; use letters, digits "
                "and _ (not first a digit), at most 63 characters"
            )
            continue
        values = checked_values(column, values, errors)
        if column in time_columns:
            values = converted_times(converter, column, values, errors)
        if column in columns:
            values = merged(columns[column], values, column, errors)
        columns[column] = values
    raise_errors(errors)
    return Batch(columns, batch.length)


def checked_values(column: str, values: list, errors: list[str]) -> list:
    """Check a column's values; booleans become 0 and 1.

    The common case (numbers in range, text, gaps) is decided per type for the
    whole column; only a column with a bad value is looked at value by value.
    """
    types = set(map(type, values))
    if types <= PLAIN_TYPES and plain_values_fine(values, types):
        return values
    for index, value in enumerate(values):
        problem = check_scalar(value)
        if problem:
            errors.append(f"row {index}: column {column!r}: value {problem}")
    if bool in types:
        values = [int(v) if type(v) is bool else v for v in values]
    return values


def plain_values_fine(values: list, types: set) -> bool:
    """Whether ints lie in the 64-bit range and floats are finite."""
    if int in types:
        ints = [v for v in values if type(v) is int]
        if max(ints) >= INT64 or min(ints) < -INT64:
            return False
    if str in types and any(text_problem(v) for v in values if type(v) is str):
        return False
    if float in types:
        return all(math.isfinite(v) for v in values if type(v) is float)
    return True


def converted_times(converter, column: str, values: list, errors: list[str]) -> list:
    """Apply ``CO2LOGSERVER_TIME_CONVERTER``; a value it cannot convert is an error."""
    converted = []
    for index, value in enumerate(values):
        try:
            converted.append(None if value is None else converter(value, column))
        except Exception:  # the converter is the operator's code: any failure is a 400
            errors.append(
                f"row {index}: column {column!r}: {short_repr(value)} is not a time "
                "the server can convert (UNIX seconds expected)"
            )
            converted.append(None)
    return converted


def merged(first: list, second: list, column: str, errors: list[str]) -> list:
    """Join two spellings of one column (``CO2`` and ``co2``) row by row."""
    result = list(first)
    for index, value in enumerate(second):
        if value is None:
            continue
        if result[index] is not None:
            errors.append(f"row {index}: column {column!r} is given twice")
        result[index] = value
    return result


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


@dataclass
class Observation:
    """One checked observation: whole UNIX seconds and ``{type code: value}``."""

    timestamp: int
    readings: dict[int, float]


def check_timestamp(value: Any, latest: float) -> str | None:
    """Return why a timestamp is refused, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"timestamp must be UNIX seconds (a number), not {short_repr(value)}"
    if isinstance(value, float) and not value.is_integer():
        return f"timestamp must be whole seconds, not {value!r}"
    if not EARLIEST_TIMESTAMP <= value <= latest:
        return (
            f"timestamp {value!r} is out of range (2000-01-01 to now + "
            "CO2LOGSERVER_MAX_CLOCK_SKEW); is the sensor clock set?"
        )
    return None


def check_reading(name: Any, value: Any) -> str | None:
    """Return why one reading is refused, or ``None``."""
    if name not in QUANTITIES:
        return f"unknown reading type {short_repr(name)}; known types: " + ", ".join(
            QUANTITIES
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"reading {name} must be a number, not {short_repr(value)}"
    if not finite(value):
        return f"reading {name} must be a finite number, not {short_repr(value)}"
    return None


def finite(value: int | float) -> bool:
    """Whether ``value`` is a finite number a float can hold (no 400-digit ints)."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond the largest float
        return False


def check_age(value: Any) -> str | None:
    """Return why an ``age`` (seconds before receipt) is refused, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"age must be a number of seconds, not {short_repr(value)}"
    if not finite(value) or value < 0:
        return f"age must be a non-negative number of seconds, not {short_repr(value)}"
    return None


def observation_time(item: dict, now: float, latest: float) -> tuple[int, list]:
    """The observation's UNIX second from exactly one of ``timestamp`` and ``age``.

    ``age`` lets a device without a clock send what it buffered: it was measured
    that many seconds before the server received the request.
    """
    if ("timestamp" in item) == ("age" in item):
        return 0, ["give exactly one of timestamp (UNIX seconds) or age (seconds ago)"]
    if "age" in item:
        problem = check_age(item["age"])
        if problem:
            return 0, [problem]
        timestamp = int(now - item["age"])
        if timestamp < EARLIEST_TIMESTAMP:
            return 0, [f"age {item['age']!r} puts the reading before 2000-01-01"]
        return timestamp, []
    problem = check_timestamp(item["timestamp"], latest)
    return (0, [problem]) if problem else (int(item["timestamp"]), [])


def check_observation(
    item: Any, now: float, latest: float
) -> tuple[Observation | None, list]:
    """Check one observation; return it or the list of its problems."""
    if not isinstance(item, dict):
        return None, ["must be an object with timestamp (or age) and readings"]
    problems = [
        f"unexpected key {short_repr(key)}"
        for key in item
        if key not in ("timestamp", "age", "readings")
    ]
    timestamp, time_problems = observation_time(item, now, latest)
    problems += time_problems
    values = item.get("readings")
    if not isinstance(values, dict) or not values:
        problems.append("readings must be an object with at least one reading")
        return None, problems
    problems += [p for p in (check_reading(k, v) for k, v in values.items()) if p]
    if problems:
        return None, problems
    readings = {QUANTITIES[k].code: float(v) for k, v in values.items()}
    return Observation(timestamp, readings), []


def check_observations(document: Any, settings: Mapping, now: float) -> list:
    """Check a whole readings payload.

    :raise PayloadTooLarge: for more than ``CO2LOGSERVER_MAX_OBSERVATIONS``.
    :raise BadRequest: naming each bad observation by its index.
    """
    if not isinstance(document, list) or not document:
        raise BadRequest(
            "The payload must be a JSON array of at least one observation, e.g. "
            '[{"timestamp": 1485778030, "readings": {"PM10": 102.0}}]'
        )
    limit = settings["CO2LOGSERVER_MAX_OBSERVATIONS"]
    if len(document) > limit:
        raise PayloadTooLarge(
            f"{len(document)} observations in one request; at most {limit} "
            "(CO2LOGSERVER_MAX_OBSERVATIONS)"
        )
    latest = now + settings["CO2LOGSERVER_MAX_CLOCK_SKEW"]
    observations, errors = [], []
    for index, item in enumerate(document):
        observation, problems = check_observation(item, now, latest)
        errors += [f"observation {index}: {problem}" for problem in problems]
        if observation:
            observations.append(observation)
    raise_errors(errors)
    return observations


def checked_payload(body: bytes, settings: Mapping, now: float):
    """Parse and check a payload; return observations or the error to raise later.

    The error waits so that authentication is answered before validation: a
    sensor without the right SECRET learns nothing about its payload.
    """
    try:
        return check_observations(parse_json_document(body), settings, now), None
    except ApiError as error:
        return None, error


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

"""Checks of OpenSmog observations: timestamps, ages and readings, one by one.

What a readings payload (``/v1``, ``/rogue/v1``, MQTT) must be before it is
stored, kept apart from :mod:`co2logserver.ingest` (which authorizes and writes)
so that each rule has one owner and is tested without a database. The earliest
time a reading may carry is defined here for every protocol. No Flask, no SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver.errors import ApiError, BadRequest, PayloadTooLarge, raise_errors
from co2logserver.parsers import parse_json_document
from co2logserver.readings import QUANTITIES
from co2logserver.store.columns import short_repr

EARLIEST_TIMESTAMP = 946684800  # 2000-01-01T00:00:00Z


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

"""LoRaWAN network-server webhooks (SPEC §9.3): The Things Stack v3 and ChirpStack v4.

Both network servers push one JSON document per uplink, once, and never retry by
default. What a device measured is the *decoded* payload, the output of the payload
formatter (TTN) or codec (ChirpStack) the operator configured: its numeric leaves are
the readings, nested keys joined by ``_`` (``{"air": {"co2": 612}}`` is ``air_co2``,
``{"values": [1, 2]}`` is ``values_0`` and ``values_1``), named through the registry.
The device is its DevEUI, ``lorawan:<16 lower-case hex digits>``, the same on either
network server. The network authenticated the device (MIC and session keys), so the
readings are verified (:attr:`DeviceRequest.network_verified`).

Field names and shapes are those the servers marshal: The Things Stack's ``jsonpb``
(snake_case, EUIs in upper-case hex, zero values omitted) and ChirpStack's pbjson
(camelCase, EUIs in lower-case hex, RFC 3339 times with ``+00:00``). Pure: no Flask,
no database.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from co2logserver.devices import DeviceReadings, DeviceRequest
from co2logserver.errors import BadRequest
from co2logserver.observation_checks import EARLIEST_TIMESTAMP
from co2logserver.readings import resolve

PROTOCOL = "lorawan"
#: Decoded payloads nest a few levels (``{"air": {"temperature": {"value": 21}}}``);
#: deeper than this is not a measurement.
MAX_DEPTH = 16
DEV_EUI = re.compile(r"[0-9a-fA-F]{16}")
#: RFC 3339 as both servers write it: ``Z`` or an offset, up to nanoseconds.
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
#: The other messages a The Things Stack webhook may send to the same path.
TTN_OTHER_MESSAGES = (
    "uplink_normalized",
    "join_accept",
    "downlink_ack",
    "downlink_nack",
    "downlink_sent",
    "downlink_failed",
    "downlink_queued",
    "downlink_queue_invalidated",
    "location_solved",
    "service_data",
)
#: The ChirpStack HTTP integration's ``?event=`` that carries readings.
CHIRPSTACK_UPLINK = "up"


@dataclass
class Uplink:
    """One uplink as the adapter understood it."""

    request: DeviceRequest
    #: ``lorawan:<deveui>``, the key of the device's rate limit.
    device: str
    #: Leaves of the decoded payload that are not numbers (strings, booleans, null).
    ignored: int = 0


def json_body(body: bytes) -> dict[str, Any]:
    """The webhook's JSON object.

    :raise BadRequest: when the body is not a JSON object.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadRequest(
            f"The body is not JSON ({type(error).__name__}: {error}); set the "
            "webhook format (The Things Stack) or payload encoding (ChirpStack) "
            "to JSON"
        ) from None
    if not isinstance(document, dict):
        raise BadRequest(
            f"The body must be a JSON object, not {type(document).__name__}"
        )
    return document


def shown(value: Any) -> str:
    """A client's value quoted in a message, cut so a message stays short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def member(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of nested objects, or ``None``."""
    value: Any = document
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def device_name(value: Any, where: str) -> str:
    """``lorawan:<deveui>`` from a DevEUI field.

    :raise BadRequest: naming ``where`` when it is missing or not 16 hex digits.
    """
    if value is None:
        raise BadRequest(
            f"{where} is missing: the DevEUI names the sensor (do not filter it "
            "out of the webhook's message)"
        )
    if not isinstance(value, str) or not DEV_EUI.fullmatch(value):
        raise BadRequest(
            f"{where} must be a DevEUI of 16 hex digits, not {shown(value)}"
        )
    return f"{PROTOCOL}:{value.lower()}"


def rfc3339_seconds(value: Any, where: str) -> int:
    """Whole UNIX seconds of an RFC 3339 time (fractions cut, as §9 stamps).

    :raise BadRequest: naming ``where`` when the text is not an RFC 3339 time.
    """
    found = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise BadRequest(f"{where} must be an RFC 3339 time, not {shown(value)}")
    year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{where} is not a valid time: {shown(value)}") from None
    offset = 0
    if found.group(8):
        sign = -1 if found.group(8) == "-" else 1
        offset = sign * (int(found.group(9)) * 3600 + int(found.group(10)) * 60)
    return int(moment.timestamp()) - offset


def uplink_time(candidates: list[tuple[str, Any]], now: float, skew: float) -> int:
    """The first candidate time that is present and plausible, else ``now``.

    A gateway without GPS may report a clock that is far off; the network server's
    own receive time is the next best, then ours (SPEC §9 Time).

    :raise BadRequest: for a candidate that is present but not a time at all.
    """
    for where, value in candidates:
        if value is None:
            continue
        seconds = rfc3339_seconds(value, where)
        if EARLIEST_TIMESTAMP <= seconds <= now + skew:
            return seconds
    return int(now)


def leaves(value: Any, prefix: str, depth: int = 0):
    """``(joined key, leaf)`` for every leaf of a decoded payload, in order.

    :raise BadRequest: when the payload nests deeper than :data:`MAX_DEPTH`.
    """
    if depth > MAX_DEPTH:
        raise BadRequest(f"{prefix[:120]}: nested deeper than {MAX_DEPTH} levels")
    items: Iterable[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        yield prefix, value
        return
    for key, child in items:
        yield from leaves(child, f"{prefix}_{key}" if prefix else str(key), depth + 1)


def numeric(value: Any) -> float | None:
    """A leaf as a reading value, or ``None`` for one that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        return math.inf


def payload_readings(
    payload: Any, where: str, ts: int
) -> tuple[list[tuple[int, str, float]], list[str]]:
    """The readings of a decoded payload and the leaves that are not numbers.

    Two fields that the registry maps to one name (``temp`` and ``temperature``)
    stay two series: the later keeps its own lower-cased name.

    :raise BadRequest: when the payload is not an object.
    """
    if not isinstance(payload, Mapping):
        raise BadRequest(
            f"{where} must be a JSON object of values, not {type(payload).__name__}"
        )
    readings, ignored, used = [], [], set()
    for key, leaf in leaves(payload, ""):
        value = numeric(leaf)
        if value is None:
            ignored.append(f"{key}={shown(leaf)}")
            continue
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
                raise BadRequest(
                    f"{where}: the field name {shown(key)} is not valid Unicode text"
                ) from None
        name = resolve(key)
        if name in used:
            name = key.strip().lower()
        if name in used:
            raise BadRequest(
                f"{where}.{key[:60]}: two fields of the payload give the reading name "
                f"{name!r}; rename one in the payload formatter"
            )
        used.add(name)
        readings.append((ts, name, value))
    return readings, ignored


def coordinate(location: Mapping, key: str, bound: float, where: str) -> float:
    """A latitude or longitude; absent is 0 (both servers omit zero values).

    :raise BadRequest: naming the field when it is not a number within ``bound``.
    """
    value = location.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{where}.{key} must be a number, not {shown(value)}")
    if not -bound <= value <= bound:
        raise BadRequest(f"{where}.{key} {shown(value)} is outside -{bound}…{bound}")
    return float(value)


def position(location: Any, where: str) -> tuple[float, float, float | None] | None:
    """``(latitude, longitude, altitude or None)`` of a location object, if any.

    :raise BadRequest: for coordinates that are not numbers in range.
    """
    if not isinstance(location, Mapping):
        return None
    if "latitude" not in location and "longitude" not in location:
        return None
    latitude = coordinate(location, "latitude", 90, where)
    longitude = coordinate(location, "longitude", 180, where)
    altitude = location.get("altitude")
    if altitude is None:
        return latitude, longitude, None
    height = numeric(altitude)
    if height is None or not math.isfinite(height):
        raise BadRequest(f"{where}.altitude must be a number, not {shown(altitude)}")
    return latitude, longitude, height


def uplink(
    name: str,
    payload: Any,
    where: str,
    ts: int,
    location: tuple[float, float, float | None] | None,
) -> Uplink:
    """The :class:`Uplink` of one device's decoded payload."""
    readings, ignored = payload_readings(payload, where, ts)
    if not readings:
        # Stored nothing: say so where the network server shows failed pushes,
        # often a formatter that returns strings (JavaScript's toFixed()).
        shown = ", ".join(ignored[:3]) or "it is empty"
        raise BadRequest(
            f"{where} has no numeric values ({shown}): make the payload formatter "
            "return numbers; nothing was stored"
        )
    device = DeviceReadings(name, readings, location)
    request = DeviceRequest(PROTOCOL, [device], network_verified=True)
    return Uplink(request, name, len(ignored))


def parse_ttn(body: bytes, now: float, skew: float) -> Uplink | None:
    """A The Things Stack v3 webhook message; ``None`` for one that is not an uplink.

    Join-accepts, downlink events, normalized uplinks ... sent to the same path are
    answered and ignored; a simulated uplink (the console's "Simulate uplink") is
    ignored too, since no device sent it.

    :raise BadRequest: for a body that is not an uplink message we can store.
    """
    document = json_body(body)
    message = document.get("uplink_message")
    if message is None:
        if any(key in document for key in TTN_OTHER_MESSAGES):
            return None
        raise BadRequest(
            "uplink_message is missing: this path takes The Things Stack's "
            '"Uplink message" webhook messages (format JSON)'
        )
    if not isinstance(message, Mapping):
        raise BadRequest("uplink_message must be a JSON object")
    if document.get("simulated") is True:
        return None
    name = device_name(
        member(document, "end_device_ids.dev_eui"), "end_device_ids.dev_eui"
    )
    if "decoded_payload" not in message:
        raise BadRequest(
            "uplink_message.decoded_payload is missing: set an uplink payload "
            "formatter for the device or application (Payload formatters > Uplink), "
            "and check Live data for as.up.data.decode.fail events; nothing was stored"
        )
    metadata = message.get("rx_metadata")
    first = metadata[0] if isinstance(metadata, list) and metadata else {}
    ts = uplink_time(
        [
            ("uplink_message.rx_metadata[0].time", member(first, "time")),
            ("uplink_message.received_at", message.get("received_at")),
            ("received_at", document.get("received_at")),
        ],
        now,
        skew,
    )
    location = position(
        member(message, "locations.user"), "uplink_message.locations.user"
    )
    return uplink(
        name, message["decoded_payload"], "uplink_message.decoded_payload", ts, location
    )


def gateway_position(rx_info: Any) -> tuple[float, float, float | None] | None:
    """The location of the strongest receiving gateway that has one.

    ChirpStack's ``rxInfo[].location`` is the *gateway's* position, not the
    device's: within radio range of it, so a sensor's published location is rounded
    anyway (SPEC §6), but it is the gateway's.
    """
    if not isinstance(rx_info, list):
        return None
    found = []
    for index, gateway in enumerate(rx_info):
        if not isinstance(gateway, Mapping):
            continue
        spot = position(gateway.get("location"), f"rxInfo[{index}].location")
        if spot is not None:
            rssi = gateway.get("rssi", 0)
            strength = rssi if isinstance(rssi, (int, float)) else -math.inf
            found.append((-strength, index, spot))
    return min(found)[2] if found else None


def parse_chirpstack(
    body: bytes, event: str | None, now: float, skew: float
) -> Uplink | None:
    """A ChirpStack v4 HTTP-integration event; ``None`` for events other than ``up``.

    :raise BadRequest: for a missing ``event`` or an uplink we cannot store.
    """
    if not event:
        raise BadRequest(
            "The query parameter event is missing: ChirpStack's HTTP integration "
            "posts to the event endpoint URL with ?event=up (join, status, ...)"
        )
    if event != CHIRPSTACK_UPLINK:
        return None
    document = json_body(body)
    name = device_name(member(document, "deviceInfo.devEui"), "deviceInfo.devEui")
    if "object" not in document:
        raise BadRequest(
            "object is missing: set a payload codec in the device profile (Codec "
            "tab) so ChirpStack decodes the payload, and check the device's events "
            "for codec errors; nothing was stored"
        )
    ts = uplink_time([("time", document.get("time"))], now, skew)
    location = gateway_position(document.get("rxInfo"))
    return uplink(name, document["object"], "object", ts, location)

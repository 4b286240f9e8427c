"""airrohr's "Send data to custom API" push (SPEC §9.1), as one DeviceRequest.

The sensor.community firmware (airrohr, ESP8266/ESP32) posts every sensor of a node
in one JSON body: ``{"esp8266id": "1234567", "software_version": "NRZ-2024-135",
"sensordatavalues": [{"value_type": "SDS_P1", "value": "12.40"}, ...]}``, with the
node in ``X-Sensor: esp8266-1234567`` and the custom-API user and password as HTTP
Basic. Each physical sensor of the node becomes a device of its own,
``airrohr:<node>:<sensor type>``, so a node with a BME280 and a DHT22 keeps two
temperature series. The sensor type is the value_type's part before the first
``_`` (``SDS``, ``BME280``, ...); the unprefixed names the firmware uses for its
DHT, its PPD42NS and its own housekeeping go to ``DHT``, ``PPD`` and ``NODE``.

A value_type this module does not map keeps its whole name, lower-cased, as a
learned quantity (``SPS30_N05`` is ``sps30_n05``): it is the name the firmware gives
the value in every API it feeds, it names the sensor model, and two different
sensors' values can never share it. Pure: bytes and headers in, no Flask, no DB.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from co2logserver.devices import DeviceReadings, DeviceRequest
from co2logserver.errors import BadRequest
from co2logserver.parsers import DECIMAL, parse_json_document
from co2logserver.readings import resolve

PROTOCOL = "airrohr"

CREDENTIAL_HINT = (
    'enter its SECRET as the Password of "Send data to custom API" on the '
    "airrohr configuration page (APIs tab; any User)"
)

#: What a node id may be (``esp8266-1234567``, ``esp32-a1b2c3d4e5f6``).
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: What a value_type may be: ``<SENSOR>_<value>`` or one of the unprefixed names.
VALUE_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Unprefixed value_types: the node's housekeeping, the DHT's, the PPD42NS's.
NODE_VALUES = frozenset({"signal", "samples", "min_micro", "max_micro", "interval"})
DHT_VALUES = frozenset({"temperature", "humidity"})
PPD_VALUES = frozenset({"p1", "p2", "durp1", "durp2", "ratiop1", "ratiop2"})

#: A value_type's part after the sensor type (lower-cased) -> registry name. The
#: PPD42NS's unprefixed ``P1``/``P2`` are particle counts, not µg/m³: never PM.
QUANTITY_OF = {
    "p0": "PM1",
    "p1": "PM10",
    "p2": "PM2_5",
    "p4": "PM4",
    "temperature": "TEMP",
    "humidity": "HUM",
    "pressure": "PRES",
    "co2_ppm": "CO2",
    "noise_laeq": "NOISE_LAEQ",
    "noise_la_min": "NOISE_LA_MIN",
    "noise_la_max": "NOISE_LA_MAX",
    "signal": "SIGNAL",
}
#: Registry names whose airrohr unit differs: the factor to the registry's unit.
SCALE = {"PRES": 0.01}  # Pa -> hPa

#: The GPS module's values that make the node's position, by index in the tuple.
LOCATION_PARTS = {"gps_lat": 0, "gps_lon": 1, "gps_height": 2}
#: GPS values that are no readings: left out and counted as ignored fields.
IGNORED_VALUES = frozenset({"gps_timestamp", "gps_date", "gps_time"})
#: What the firmware sends for "no fix" and "no altitude" (fetchSensorGPS).
NO_FIX, NO_ALTITUDE = -200.0, -1000.0


@dataclass
class AirrohrPush:
    """One parsed push: the devices for ingest, the node, what was left out."""

    request: DeviceRequest
    node: str
    ignored_fields: int = 0


def sensor_type(value_type: str) -> str:
    """The sensor of a value_type: ``SDS_P1`` is ``SDS``, ``signal`` is ``NODE``."""
    key = value_type.lower()
    if key in NODE_VALUES:
        return "NODE"
    if key in DHT_VALUES:
        return "DHT"
    if key in PPD_VALUES:
        return "PPD"
    prefix, sep, _ = value_type.partition("_")
    return prefix.upper() if sep else "NODE"


def quantity(value_type: str) -> tuple[str, float]:
    """The registry name of a value_type and the factor to its unit.

    ``BME280_pressure`` is ``("PRES", 0.01)``; an unmapped one keeps its whole name
    lower-cased (``SPS30_N05`` -> ``sps30_n05``), so values never merge.
    """
    key = value_type.lower()
    if key in NODE_VALUES or key in DHT_VALUES:
        rest = key
    elif key in PPD_VALUES:
        rest = ""
    else:
        rest = key.partition("_")[2]
    name = QUANTITY_OF.get(rest) or resolve(value_type)
    return name, SCALE.get(name, 1.0)


def node_id(headers: Mapping[str, str], document: dict) -> str:
    """``X-Sensor``, else ``esp8266-<esp8266id>``.

    :raise BadRequest: when neither is there or the id is not a plain name.
    """
    sensor = headers.get("X-Sensor")
    if sensor is not None:
        if not NODE_ID.fullmatch(sensor):
            raise BadRequest(
                f"X-Sensor {clip(sensor)} is not a node id such as esp8266-1234567 "
                "(letters, digits, '.', '_', '-'; at most 64)"
            )
        return sensor
    chip = document.get("esp8266id")
    if isinstance(chip, int) and not isinstance(chip, bool) and chip >= 0:
        chip = str(chip)
    if chip is None:
        raise BadRequest(
            "The node is unknown: send the X-Sensor header (esp8266-<chip id>) or "
            '"esp8266id" in the body, as the airrohr firmware does'
        )
    if not isinstance(chip, str) or not NODE_ID.fullmatch(f"esp8266-{chip}"):
        raise BadRequest(
            f"esp8266id {clip(chip)} is not a chip id (letters and digits, at most "
            "55); send it as the firmware does, or send the X-Sensor header"
        )
    return f"esp8266-{chip}"


def basic_password(authorization: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header (the SECRET), or ``None``.

    The firmware sends Basic as soon as the custom API's User or Password is set; an
    empty password is no credential.

    :raise BadRequest: for another scheme or a header that does not decode.
    """
    if authorization is None or not authorization.strip():
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise BadRequest(
            f"Authorization scheme {clip(scheme)} is not supported here: send the "
            "SECRET as the Basic password (the custom API's Password)"
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest(
            "The Authorization header is not Basic base64 of 'user:password'"
        ) from None
    password = decoded.partition(":")[2]
    return password or None


def number(item: Any) -> float | None:
    """A value as a float: a JSON number, or a string in plain decimal notation."""
    if isinstance(item, bool):
        return None
    if isinstance(item, str):
        if not DECIMAL.fullmatch(item):
            return None
        item = float(item)
    if not isinstance(item, (int, float)):
        return None
    try:
        value = float(item)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def clip(value: Any, length: int = 40) -> str:
    """A value's repr for an error message, cut to ``length`` characters."""
    text = repr(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def data_values(document: Any) -> list[tuple[str, float | None]]:
    """``(value_type, number)`` of each entry (``None`` for an ignored one).

    :raise BadRequest: naming every malformed entry, non-number value and
        value_type sent twice.
    """
    if not isinstance(document, dict):
        raise BadRequest(
            'The body must be a JSON object with "sensordatavalues", as airrohr sends'
        )
    entries = document.get("sensordatavalues")
    if not isinstance(entries, list):
        raise BadRequest('"sensordatavalues" must be a list of {"value_type", "value"}')
    problems, values, seen = [], [], set()
    for index, entry in enumerate(entries):
        where = f"sensordatavalues[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("value_type"), str):
            problems.append(f'{where}: must be an object with a "value_type" string')
            continue
        kind, raw = entry["value_type"], entry.get("value")
        if not VALUE_TYPE.fullmatch(kind):
            problems.append(
                f"{where}: value_type {clip(kind)} is not a name such as SDS_P1 "
                "(letters, digits, '_', '.', '-'; at most 64)"
            )
            continue
        if kind.lower() in seen:
            problems.append(f"{where}: value_type {kind} is sent twice")
        seen.add(kind.lower())
        value = number(raw)
        if value is None and kind.lower() not in IGNORED_VALUES:
            problems.append(f"{where}: {kind}: value {clip(raw)} is not a number")
        values.append((kind, value))
    if problems:
        raise BadRequest("; ".join(problems))
    return values


def node_location(
    gps: dict[int, float],
) -> tuple[tuple[float, float, float | None] | None, int]:
    """The position of ``GPS_lat``/``GPS_lon``/``GPS_height``, and values left out.

    The firmware sends -200/-200 without a fix and -1000 without an altitude:
    no position (or no elevation), never an error the device would drop data for.

    :raise BadRequest: for one coordinate without the other, or one out of range.
    """
    if not gps:
        return None, 0
    if (0 in gps) != (1 in gps):
        raise BadRequest("GPS_lat and GPS_lon must be sent together")
    if 0 not in gps:  # a height alone is no position
        return None, len(gps)
    latitude, longitude = gps[0], gps[1]
    if latitude == NO_FIX and longitude == NO_FIX:
        return None, len(gps)
    elevation, ignored = gps.get(2), 0
    if elevation == NO_ALTITUDE:
        elevation, ignored = None, 1
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise BadRequest(
            f"GPS_lat {latitude:g}, GPS_lon {longitude:g} is not a position "
            "(latitude -90 to 90, longitude -180 to 180)"
        )
    if elevation is not None and not -1e4 <= elevation <= 1e5:
        raise BadRequest(f"GPS_height {elevation:g} m is out of range")
    return (latitude, longitude, elevation), ignored


def parse_push(body: bytes, headers: Mapping[str, str], now: int) -> AirrohrPush:
    """The devices of one airrohr push, stamped with the receive time ``now``.

    :raise BadRequest: 400 naming the node, entry or value_type that is wrong.
    """
    document = parse_json_document(body)
    values = data_values(document)
    node = node_id(headers, document)
    credential = basic_password(headers.get("Authorization"))
    devices, ignored = node_readings(node, values, now)
    request = DeviceRequest(
        PROTOCOL, devices, credential, credential_hint=CREDENTIAL_HINT
    )
    return AirrohrPush(request, node, ignored)


def node_readings(
    node: str, values: Sequence[tuple[str, float | None]], now: int
) -> tuple[list[DeviceReadings], int]:
    """The sensors of an airrohr node's values, placed where its GPS says.

    The one rule for airrohr's value_types, used by the custom API and by the
    node's InfluxDB lines alike (SPEC §9.2). Returns the devices and how many
    values were not readings.

    :raise BadRequest: for two value_types of one quantity or a bad position.
    """
    devices, gps, ignored = node_devices(node, values, now)
    location, left_out = node_location(gps)
    if location is not None:
        if not devices:  # a GPS-only push: the node itself is where it is
            name = f"{PROTOCOL}:{node}:NODE"
            devices[name] = DeviceReadings(name)
        for device in devices.values():
            device.location = location
    return list(devices.values()), ignored + left_out


def node_devices(
    node: str, values: Sequence[tuple[str, float | None]], now: int
) -> tuple[dict[str, DeviceReadings], dict[int, float], int]:
    """The node's sensors by device name, its GPS values, and the ignored count.

    :raise BadRequest: when two value_types would be one quantity of one sensor.
    """
    devices: dict[str, DeviceReadings] = {}
    sent_as: dict[tuple[str, str], str] = {}
    gps: dict[int, float] = {}
    ignored = 0
    for kind, value in values:
        key = kind.lower()
        if key in IGNORED_VALUES or value is None:
            ignored += 1
            continue
        if key in LOCATION_PARTS:
            gps[LOCATION_PARTS[key]] = value
            continue
        device_type, (name, scale) = sensor_type(kind), quantity(kind)
        if (device_type, name) in sent_as:
            raise BadRequest(
                f"value_types {sent_as[device_type, name]} and {kind} are both "
                f"{name} of sensor {device_type}: send one"
            )
        sent_as[device_type, name] = kind
        device_name = f"{PROTOCOL}:{node}:{device_type}"
        device = devices.setdefault(device_name, DeviceReadings(device_name))
        if scale != 1.0:  # Pa with 2 decimals is hPa with 4: no float noise
            value = round(value * scale, 6)
        device.readings.append((now, name, value))
    return devices, gps, ignored

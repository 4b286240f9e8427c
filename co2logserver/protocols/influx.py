"""InfluxDB writes (SPEC §9.2): a line-protocol body to one DeviceRequest.

Tasmota, Telegraf and airrohr's "Send to InfluxDB" post line protocol to ``/write``
(InfluxDB 1.x) or ``/api/v2/write`` (2.x). Every series (measurement plus its tags)
is a device of its own, named ``influx:<series>`` with the tags sorted by key and
escaped as InfluxDB prints a series key, so two series never share a sensor. Each
numeric field is a reading named through the registry; a field called ``value``
takes the measurement's name (Tasmota's ``temperature,device=x value=21.3`` is
``TEMP``). String and boolean fields are no readings: left out and counted.
airrohr's own lines (``feinstaub,node=esp8266-…``: one tag, ``node``, naming an
ESP8266 or ESP32; the measurement is the owner's setting) go to the same
``airrohr:<node>:<type>`` sensors as its custom-API posts (SPEC §9.1).

The store keeps whole seconds: a timestamp in any precision is rounded down to its
second, so two points of one series and field within one second are one reading,
and the first stored stands (a resent batch stores nothing twice). Pure: no Flask.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from co2logserver.devices import DeviceReadings, DeviceRequest
from co2logserver.errors import BadRequest
from co2logserver.protocols import airrohr, lineprotocol
from co2logserver.protocols.lineprotocol import Point
from co2logserver.readings import resolve

PROTOCOL = "influx"
#: Precisions each API names (InfluxDB 1.x also takes ``ns``; ``us`` is accepted
#: there too because it cannot mean anything but microseconds).
V1_PRECISIONS = ("n", "ns", "u", "us", "ms", "s", "m", "h")
V2_PRECISIONS = ("ns", "us", "ms", "s")
V1_HINT = (
    "send the sensor's SECRET as the InfluxDB password (p=, HTTP Basic, or "
    "Authorization: Token user:SECRET)"
)
V2_HINT = "send the sensor's SECRET as the token (Authorization: Token SECRET)"
#: airrohr's "Send to InfluxDB" names its node in the only tag, ``node``; the
#: measurement is the owner's setting (``feinstaub`` by default).
AIRROHR_NODE = re.compile(r"(?:esp8266|esp32)-[0-9A-Za-z]{1,32}")


#: Field names that mean something else in line protocol than in COMMON_NAMES:
#: Tasmota's ``rssi`` is WiFi quality in percent (its dBm is ``signal``), so it
#: stays a quantity of its own instead of SIGNAL dBm.
OWN_NAMES = {"rssi": "rssi"}


@dataclass
class InfluxWrite:
    """A parsed write: the request for ingest and the fields left out."""

    request: DeviceRequest
    ignored_fields: int = 0


def v1_credential(args: Mapping[str, str], authorization: str | None) -> str | None:
    """The password of a 1.x write: ``p=``, else Basic, else ``Token user:pass``.

    This is the order ``influxd`` looks in; an empty password is no credential.

    :raise BadRequest: for an Authorization header that does not decode.
    """
    if args.get("p"):
        return args["p"]
    scheme, given = split_authorization(authorization)
    if scheme == "basic":
        return basic_password(given)
    if scheme == "token":
        # Tasmota sends "Token <password>" beside p=; 1.8 clients "user:password".
        return given.partition(":")[2] if ":" in given else given or None
    return None


def v1_user(args: Mapping[str, str], authorization: str | None) -> str:
    """The user a 1.x write names (``u=``, Basic or Token), ``""`` for none."""
    if args.get("u"):
        return args["u"]
    try:
        scheme, given = split_authorization(authorization)
        if scheme == "basic":
            return decode_basic(given).partition(":")[0]
    except BadRequest:
        return ""
    if scheme == "token" and ":" in given:
        return given.partition(":")[0]
    return ""


def v2_credential(authorization: str | None) -> str | None:
    """The token of a 2.x write (``Token`` or ``Bearer``), the sensor's SECRET."""
    scheme, given = split_authorization(authorization)
    if scheme in ("token", "bearer"):
        return given or None
    return None


def split_authorization(authorization: str | None) -> tuple[str, str]:
    """``(scheme lower-cased, rest)`` of an Authorization header; ``("", "")``."""
    if not authorization or not authorization.strip():
        return "", ""
    scheme, _, rest = authorization.strip().partition(" ")
    return scheme.lower(), rest.strip()


def decode_basic(encoded: str) -> str:
    """``user:password`` of Basic credentials.

    :raise BadRequest: when they are not base64 of UTF-8 text.
    """
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest(
            "The Authorization header is not Basic base64 of 'user:password'"
        ) from None


def basic_password(encoded: str) -> str | None:
    """The password of Basic credentials, ``None`` when empty."""
    return decode_basic(encoded).partition(":")[2] or None


def checked_precision(precision: str | None, allowed: tuple[str, ...]) -> str:
    """The request's precision, ``ns`` when it names none.

    :raise BadRequest: for a precision the API does not know, naming the valid ones.
    """
    if not precision:
        return "ns"
    if precision not in allowed:
        raise BadRequest(
            f"invalid precision {precision[:20]!r} (use {', '.join(allowed)})"
        )
    return precision


def decode_text(body: bytes) -> str:
    """The body as text.

    :raise BadRequest: when it is not UTF-8.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body[: error.start].count(b"\n") + 1
        raise BadRequest(
            f"unable to parse the line protocol: line {line} is not UTF-8 text"
        ) from None


def parse_write(
    body: bytes,
    precision: str,
    now: int,
    credential: str | None,
    hint: str,
) -> InfluxWrite:
    """The devices and readings of a write body, the time of each in seconds.

    Points without a timestamp get ``now``.

    :raise BadRequest: naming the lines that are not line protocol.
    """
    points = lineprotocol.parse(decode_text(body), precision)
    devices: dict[str, DeviceReadings] = {}
    ignored = 0
    for point in points:
        ts = now if point.timestamp is None else lineprotocol.seconds(
            point.timestamp, precision
        )  # fmt: skip
        node, name = series_device(point.measurement, point.tags)
        if node is None:
            ignored += add_series_readings(devices, name, point, ts)
            continue
        numbers = [(key, float(v)) for key, v in point.fields if is_number(v)]
        for device in airrohr.node_readings(node, numbers, ts)[0]:
            merge(devices, device)
        ignored += len(point.fields) - len(numbers)
    request = DeviceRequest(
        PROTOCOL, list(devices.values()), credential=credential, credential_hint=hint
    )
    return InfluxWrite(request, ignored)


def add_series_readings(
    devices: dict[str, DeviceReadings], name: str, point: Point, ts: int
) -> int:
    """Add a point's numeric fields to its series' device; returns the others' count.

    A series whose fields are all strings or booleans gets no device.
    """
    ignored = 0
    device = devices.get(name)
    for key, value in point.fields:
        if not is_number(value):
            ignored += 1
            continue
        if device is None:
            device = devices[name] = DeviceReadings(name)
        quantity = quantity_name(point.measurement if key == "value" else key)
        device.readings.append((ts, quantity, float(value)))
    return ignored


def merge(devices: dict[str, DeviceReadings], device: DeviceReadings) -> None:
    """Add a point's device to the request's, one entry per device name."""
    known = devices.get(device.name)
    if known is None:
        devices[device.name] = device
        return
    known.readings.extend(device.readings)
    if device.location is not None:
        known.location = device.location


def is_number(value) -> bool:
    """Whether a field value is a reading (a float or an integer, not a bool)."""
    return type(value) is float or type(value) is int  # bool is an int subclass


@functools.lru_cache(maxsize=4096)
def series_device(
    measurement: str, tags: tuple[tuple[str, str], ...]
) -> tuple[str | None, str]:
    """``(airrohr node or None, device name)`` of a series (a batch repeats it).

    An airrohr line (``<measurement>,node=esp8266-…``) speaks for the node's
    sensors; any other series is the device ``influx:<series key>``.
    """
    if len(tags) == 1 and tags[0][0] == "node" and AIRROHR_NODE.fullmatch(tags[0][1]):
        return tags[0][1], ""
    return None, f"{PROTOCOL}:{lineprotocol.escaped_key(measurement, tags)}"


@functools.lru_cache(maxsize=4096)
def quantity_name(field: str) -> str:
    """The registry name of a field key (a batch repeats the same few)."""
    return resolve(field, OWN_NAMES)

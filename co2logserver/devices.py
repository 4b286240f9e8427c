"""Devices of other protocols (SPEC §9): their identity and their way into ingest.

A protocol adapter (airrohr, InfluxDB line protocol, LoRaWAN) turns one request into
one :class:`DeviceRequest`: every device it speaks for, by its protocol's own name
(``airrohr:esp8266-1234567:SDS``), with readings already named by the registry
(:func:`co2logserver.readings.resolve`) and converted to the registry's units, and
the credential the protocol carried. :func:`submit_devices` stores it the way
:func:`co2logserver.ingest.submit_readings` stores a ``/v1`` post — one transaction,
the §6 authorization table, safe retries, the outbox — because it is the same path:
both end in :func:`co2logserver.ingest.store_sensor_readings`. No Flask here.
"""

from __future__ import annotations

import functools
import hmac
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from co2logserver import ingest, verify
from co2logserver.errors import BadRequest, Forbidden, WrongCredential, raise_errors
from co2logserver.observation_checks import EARLIEST_TIMESTAMP
from co2logserver.readings import QUANTITIES, learned_name_problem
from co2logserver.store import Store
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.columns import short_repr
from co2logserver.store.quantities import TooManyQuantities

#: SPEC §9: the namespace of the uuid5 that turns a device name into its SUID.
NAMESPACE = uuid.UUID("5d317e9b-2b47-4d1f-a6a9-bbeee45190db")

#: ``(UNIX second, registry name, value)`` of one reading of a device.
DeviceReading = tuple[int, str, float]


@functools.lru_cache(maxsize=65536)
def suid_for(name: str) -> str:
    """The SUID of a device name such as ``lorawan:0004a30b001c0530``.

    Cached: a network's devices post again and again, and a uuid5 (SHA-1 and
    formatting) cost more than the rest of an airrohr node's identity.
    """
    return str(uuid.uuid5(NAMESPACE, name))


@dataclass
class DeviceReadings:
    """What one device said in a request: its name, readings and position."""

    #: ``<protocol>:<device id>``, kept as the sensor's ``alias``.
    name: str
    readings: list[DeviceReading] = field(default_factory=list)
    #: ``(latitude, longitude, elevation or None)`` the device reported (private).
    location: tuple[float, float, float | None] | None = None


@dataclass
class DeviceRequest:
    """One protocol request, as the adapter understood it."""

    protocol: str
    devices: list[DeviceReadings]
    #: The SECRET from the protocol's own credential slot (Basic password, ``p``,
    #: ``Token``), or ``None`` when the request carried none.
    credential: str | None = None
    #: The network server authenticated the device (LoRaWAN): readings are verified.
    network_verified: bool = False
    #: How this protocol sends the SECRET, for the 403 of a secure sensor.
    credential_hint: str = "send the sensor's SECRET as the password"


@dataclass
class DeviceResult:
    """What :func:`submit_devices` did: new readings and names it refused."""

    stored: int = 0
    refused_names: list[str] = field(default_factory=list)


def check_device_readings(
    request: DeviceRequest, settings: Mapping, now: float
) -> list[str]:
    """Every problem of the request's devices, naming the device and reading."""
    latest = now + settings["CO2LOGSERVER_MAX_CLOCK_SKEW"]
    problems = []
    for device in request.devices:
        for ts, name, value in device.readings:
            reasons = []
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                reasons.append("value must be a number")
            elif not math.isfinite(value):
                reasons.append(f"value {value!r} is not a finite number")
            if not EARLIEST_TIMESTAMP <= ts <= latest:
                reasons.append(
                    f"time {ts} is out of range (2000-01-01 to now + "
                    "CO2LOGSERVER_MAX_CLOCK_SKEW); is the device clock set?"
                )
            if name not in QUANTITIES and (problem := learned_name_problem(name)):
                reasons.append(problem)
            if reasons:  # the prefix only then: this runs for every reading
                shown = name if name in QUANTITIES else short_repr(name)
                problems += [f"{device.name}: {shown}: {r}" for r in reasons]
    return problems


def submit_devices(
    store: Store,
    settings: Mapping,
    request: DeviceRequest,
    now: float | None = None,
    authorized: frozenset[str] = frozenset(),
) -> DeviceResult:
    """Store a protocol request's readings; all of them or, on any error, none.

    :raise BadRequest: 400 naming the device and reading that is wrong.
    :raise Forbidden: 403 for a secure sensor without a credential.
    :raise WrongCredential: 401 for a secure sensor with a wrong one.
    :raise StorageUnavailable: 503 when the database is down.

    ``now`` is the receive time; ``authorized`` the SUIDs whose credential the
    spool already checked (the request's credential is never written to disk).
    """
    now = time.time() if now is None else now
    raise_errors(check_device_readings(request, settings, now))
    accept = settings["CO2LOGSERVER_ACCEPT_NEW_READING_TYPE"]
    result = DeviceResult()
    # Sorted by SUID: two requests lock new sensors in one order, never deadlock.
    devices = sorted(request.devices, key=lambda d: suid_for(d.name))
    with store.transaction() as conn:
        coded = [(device, suid_for(device.name)) for device in devices]
        known = sensor_sql.sensors_by_suid(conn, [suid for _device, suid in coded])
        batches = []
        for device, suid in coded:
            values, learned = coded_values(store, conn, device, accept, result)
            if not values and device.location is None:
                continue
            sensor = known.get(suid)
            registration = writable_registration(
                store, conn, suid, sensor, request, int(now), suid in authorized
            )
            sensor_sql.describe_device(
                conn, suid, sensor, device.name, device.location, int(now)
            )
            batches.append(ingest.SensorReadings(suid, registration, values, learned))
        news = ingest.store_readings(conn, settings, batches)
        result.stored = sum(map(len, news))
    return result


def coded_values(
    store: Store, conn, device: DeviceReadings, accept: Callable, result: DeviceResult
) -> tuple[list[tuple[int, int, float]], dict[int, str]]:
    """The device's readings as ``(ts, code, value)``; refused new names left out.

    Also returns the names of the learned codes among them (for the outbox). Each
    name is looked up once: this runs while the request holds the write turn.
    """
    codes: dict[str, int | None] = {}
    values = []
    for ts, name, value in device.readings:
        if name in codes:
            code = codes[name]
        else:
            code = codes[name] = code_of(store, conn, device, name, accept)
        if code is None:
            result.refused_names.append(name)
            continue
        values.append((ts, code, float(value)))
    learned = {
        code: name
        for name, code in codes.items()
        if code is not None and name not in QUANTITIES
    }
    return values, learned


def code_of(
    store: Store, conn, device: DeviceReadings, name: str, accept: Callable
) -> int | None:
    """The stored code of a reading's name; ``None`` for a new name refused.

    :raise BadRequest: when no more new quantities can be learned.
    """
    quantity = QUANTITIES.get(name)
    if quantity is not None:
        return quantity.code
    if store.quantities.find(conn, name) is None and not accept(name):
        return None
    try:
        return store.quantities.code_for(conn, name)
    except TooManyQuantities as error:
        raise BadRequest(f"{device.name}: {name}: {error}") from None


def writable_registration(
    store: Store,
    conn,
    suid: str,
    sensor,
    request: DeviceRequest,
    now: int,
    authorized: bool,
) -> int:
    """The registration the device's readings go under, after the §6 table.

    First use registers the sensor: rogue, or secure without a SECRET when the
    network authenticated the device. A secure sensor needs its SECRET in the
    protocol's credential slot (none: 403, wrong: 401) unless the network vouches.
    ``sensor`` is its row as read with the request's others (``None``: not yet).
    """
    if sensor is None:
        sensor = sensor_sql.sensor_to_write(conn, suid)
    if request.network_verified:
        if sensor is not None and sensor.secure:
            return sensor.registration_id
        registration = sensor_sql.new_registration(conn, suid, True, None, now)
        sensor_sql.save_sensor(
            conn, suid, registration, True, None, now, exists=sensor is not None
        )
        return registration
    if sensor is None:
        return ingest.register_rogue(conn, suid, now)
    credentials = verify.credentials_of(conn, sensor)
    store.registrations[suid] = credentials
    if sensor.secure and not authorized:
        check_credential(suid, credentials, request)
    return sensor.registration_id


def check_credential(suid: str, credentials, request: DeviceRequest) -> None:
    """A secure sensor's SECRET in the protocol's slot, compared in constant time.

    Needs no database (``credentials`` may come from the worker's cache), so the
    spool applies the same rule while the database is away.

    :raise Forbidden: 403 without a credential.
    :raise WrongCredential: 401 for another one.
    """
    if request.credential is None:
        raise Forbidden(
            f"Sensor {suid} is registered as secure: {request.credential_hint}"
        )
    secret = credentials.secret
    given = request.credential.strip().lower().encode()
    if secret is None or not hmac.compare_digest(given, secret.encode()):
        raise WrongCredential(
            f"Sensor {suid} is registered as secure and the credential is not its "
            "current SECRET"
        )

"""The OpenSmog sensor API (SPEC §6): registration, the authorization table, payload
checks, safe retries, re-registration, rogue sensors, and SECRETs kept out of logs.

The core behaviours use ``any_db_app`` and so run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time

import pytest
from sqlalchemy import exc, inspect, text

from co2logserver.store import get_store
from tests.conftest import SensorActions, observations, opensmog_hash

NOW = int(time.time())
T0 = NOW - 3600
SEED_METADATA = {
    "manufacturer": "ACME INC",
    "model": "X9000",
    "location": {"latitude": 1.0, "longitude": 1.0, "elevation": 8000.0},
}
SEED_READINGS = [
    {"timestamp": T0, "readings": {"PM2_5": 201.1, "PM10": 102.0, "TEMP": 12.7}},
    {"timestamp": T0 + 1, "readings": {"PM2_5": 202.1, "PM10": 101.0}},
]


def actions(any_db_app, **config) -> SensorActions:
    """Sensor actions on a fresh app (SQLite or PostgreSQL)."""
    return SensorActions(any_db_app(**config).test_client())


def encode(document) -> bytes:
    """JSON bytes as a sensor would send them."""
    return json.dumps(document).encode()


def sensor(api: SensorActions, suid: str) -> dict | None:
    """The public view of a sensor, or ``None`` for 404."""
    response = api.client.get(f"/v1/sensors/{suid}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.data
    return response.get_json()


def stored(api: SensorActions, suid: str) -> list[tuple]:
    """Every stored reading of ``suid`` as (timestamp, type, value, verified)."""
    response = api.client.get(
        f"/v1/sensors/{suid}/readings", query_string={"limit": 5000}
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.data
    assert response.get_json()["next"] is None
    return [
        (r["timestamp"], r["type"], r["value"], r["verified"])
        for r in response.get_json()["readings"]
    ]


def error_of(response, status: int) -> str:
    """The message of a canonical JSON error with ``status``."""
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    return body["error"]


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------


def test_register_answers_a_fresh_secret_as_text(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    response = api.client.put(f"/v1/sensors/{suid}", json=SEED_METADATA)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    secret = response.get_data(as_text=True)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert api.register(api.new_suid()) != secret
    view = sensor(api, suid)
    assert view["secure"] is True
    assert (view["manufacturer"], view["model"]) == ("ACME INC", "X9000")
    assert view["reading_count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"  \n",
        encode({"manufacturer": None, "model": None, "location": None}),
        encode({"location": {"latitude": 90, "longitude": 180}}),
        encode({"location": {"latitude": -90, "longitude": -180, "elevation": -430}}),
        encode({"location": {"latitude": 0, "longitude": 0, "elevation": None}}),
        encode({"firmware": "1.2.3", "sensors": ["SDS011", "BME280"]}),
    ],
)
def test_every_registration_field_is_optional(client, body):
    api = SensorActions(client)
    suid = api.new_suid()
    response = client.put(
        f"/v1/sensors/{suid}", data=body, content_type="application/json"
    )
    assert response.status_code == 200, response.data
    assert sensor(api, suid)["secure"] is True


def test_suid_is_case_insensitive_and_stored_lowercase(sensors):
    suid = sensors.new_suid()
    secret = sensors.register(suid.upper())
    body = observations(T0)
    assert sensors.post(suid, body, secret).status_code == 200
    assert sensors.post(suid.upper(), observations(T0 + 1), secret).status_code == 200
    assert sensor(sensors, suid.upper())["suid"] == suid
    assert len(stored(sensors, suid)) == 4


def test_further_metadata_is_kept(make_app):
    client = make_app(ADMIN_TOKENS=["admin-token"]).test_client()
    api = SensorActions(client)
    suid = api.new_suid()
    extra = {"firmware": "1.2.3", "sensors": ["SDS011", "BME280"], "owner": {"id": 7}}
    api.register(suid, {**SEED_METADATA, **extra})
    view = client.get(
        f"/v1/sensors/{suid}", headers={"Authorization": "Bearer admin-token"}
    ).get_json()
    assert view["metadata"] == extra


BAD_SUID = "123e4567-e89b-12d3-a456-42665544000"


@pytest.mark.parametrize(
    ("suid", "body", "status", "messages"),
    [
        (BAD_SUID, b"{}", 400, ["is not a SUID"]),
        ("not-a-uuid", b"{}", 400, ["is not a SUID"]),
        (None, b"{", 400, ["not valid JSON"]),
        (None, b"[1, 2]", 400, ["must be a JSON object"]),
        (None, b'"ACME"', 400, ["must be a JSON object"]),
        (None, encode({"manufacturer": 5}), 400, ["manufacturer must be a string"]),
        (None, encode({"model": ["X9000"]}), 400, ["model must be a string"]),
        (None, encode({"location": "Berlin"}), 400, ["location must be an object"]),
        (None, encode({"location": [1, 1]}), 400, ["location must be an object"]),
        (
            None,
            encode({"location": {"latitude": 90.5, "longitude": 0}}),
            400,
            ["location.latitude must lie between -90 and 90"],
        ),
        (
            None,
            encode({"location": {"latitude": -91, "longitude": 0}}),
            400,
            ["location.latitude must lie between -90 and 90"],
        ),
        (
            None,
            encode({"location": {"latitude": 0, "longitude": 180.01}}),
            400,
            ["location.longitude must lie between -180 and 180"],
        ),
        (
            None,
            encode({"location": {"latitude": 0, "longitude": -181}}),
            400,
            ["location.longitude must lie between -180 and 180"],
        ),
        (
            None,
            b'{"location": {"latitude": NaN, "longitude": 0}}',
            400,
            ["location.latitude must lie between"],
        ),
        (
            None,
            encode({"location": {"latitude": "52.5", "longitude": 13.4}}),
            400,
            ["location.latitude must be a number"],
        ),
        (
            None,
            encode({"location": {"latitude": True, "longitude": 13.4}}),
            400,
            ["location.latitude must be a number"],
        ),
        (
            None,
            encode({"location": {"latitude": 52.5}}),
            400,
            ["location.longitude is missing"],
        ),
        (
            None,
            encode({"location": {"latitude": 1, "longitude": 1, "elevation": "high"}}),
            400,
            ["location.elevation must be a number"],
        ),
        (
            None,
            encode({"location": {"latitude": 1, "longitude": 1, "elevation": 1e9}}),
            400,
            ["location.elevation must lie between"],
        ),
        (
            None,
            encode({"manufacturer": 1, "location": {"latitude": 100, "longitude": 0}}),
            400,
            ["manufacturer must be a string", "location.latitude must lie between"],
        ),
    ],
)
def test_invalid_registrations(sensors, suid, body, status, messages):
    suid = suid or sensors.new_suid()
    response = sensors.client.put(
        f"/v1/sensors/{suid}", data=body, content_type="application/json"
    )
    message = error_of(response, status)
    for expected in messages:
        assert expected in message
    if suid != BAD_SUID and suid != "not-a-uuid":
        assert sensor(sensors, suid) is None, "a refused registration stored nothing"


def test_metadata_over_4_kib_is_refused(sensors):
    suid = sensors.new_suid()
    body = encode({"notes": "x" * 4100})
    response = sensors.client.put(
        f"/v1/sensors/{suid}", data=body, content_type="application/json"
    )
    assert response.status_code in (400, 413)
    assert "4096" in error_of(response, response.status_code)
    assert sensor(sensors, suid) is None


def test_metadata_of_4_kib_is_accepted(sensors):
    suid = sensors.new_suid()
    body = encode({"notes": "x" * 4000})
    assert len(body) <= 4096
    response = sensors.client.put(
        f"/v1/sensors/{suid}", data=body, content_type="application/json"
    )
    assert response.status_code == 200


# --------------------------------------------------------------------------------------
# The authorization table of SPEC §6
# --------------------------------------------------------------------------------------

WRONG_HEADER = "OpenSmogHash " + "0" * 64


@pytest.mark.parametrize(
    ("registered", "header", "status", "verified"),
    [
        pytest.param(False, None, 200, False, id="absent-not-registered-rogue"),
        pytest.param(True, None, 403, None, id="absent-secure-403"),
        pytest.param(False, "wrong", 200, False, id="present-not-registered-ignored"),
        pytest.param(True, "correct", 200, True, id="correct-secure-verified"),
        pytest.param(True, "wrong", 401, None, id="wrong-secure-401"),
    ],
)
def test_authorization_table(any_db_app, registered, header, status, verified):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid) if registered else None
    body = encode(SEED_READINGS)
    headers = {}
    if header == "correct":
        headers["Authorization"] = f"OpenSmogHash {opensmog_hash(body, secret)}"
    elif header == "wrong":
        headers["Authorization"] = WRONG_HEADER
    response = api.client.post(
        f"/v1/sensors/{suid}/readings",
        data=body,
        headers=headers,
        content_type="application/json",
    )
    assert response.status_code == status, response.data
    if status == 200:
        assert response.data == b""
        assert stored(api, suid) == [
            (T0, "PM10", 102.0, verified),
            (T0, "PM2_5", 201.1, verified),
            (T0, "TEMP", 12.7, verified),
            (T0 + 1, "PM10", 101.0, verified),
            (T0 + 1, "PM2_5", 202.1, verified),
        ]
        assert sensor(api, suid)["secure"] is registered
    else:
        error_of(response, status)
        assert stored(api, suid) == []
        assert sensor(api, suid)["reading_count"] == 0


@pytest.mark.parametrize(
    "header",
    [
        "OpenSmogHash " + "0" * 64,
        "OpenSmogHash " + "0" * 63,
        "OpenSmogHash " + "g" * 64,
        "OpenSmogHash",
        "OpenSmogHash ",
        "Bearer whatever",
        "Basic dXNlcjpwYXNz",
        "",
    ],
)
def test_secure_sensor_with_a_wrong_or_malformed_header_gets_401(sensors, header):
    suid = sensors.new_suid()
    sensors.register(suid)
    response = sensors.post(suid, observations(T0), headers={"Authorization": header})
    assert "OpenSmogHash" in error_of(response, 401)
    assert stored(sensors, suid) == []


@pytest.mark.parametrize(
    "header", ["OpenSmogHash " + "0" * 64, "Bearer x", "OpenSmogHash", "nonsense"]
)
def test_header_of_an_unregistered_sensor_is_ignored(sensors, header):
    suid = sensors.new_suid()
    response = sensors.post(suid, observations(T0), headers={"Authorization": header})
    assert response.status_code == 200
    assert {r[3] for r in stored(sensors, suid)} == {False}
    assert sensor(sensors, suid)["secure"] is False


@pytest.mark.parametrize(
    "spell",
    [str.lower, str.upper, lambda h: h.title()],
    ids=["lower", "upper", "mixed"],
)
def test_scheme_and_hex_are_case_insensitive(sensors, spell):
    suid = sensors.new_suid()
    secret = sensors.register(suid)
    body = observations(T0)
    header = spell(f"OpenSmogHash {opensmog_hash(body, secret)}")
    response = sensors.post(suid, body, headers={"Authorization": header})
    assert response.status_code == 200, response.data
    assert {r[3] for r in stored(sensors, suid)} == {True}


def test_tampered_body_gets_401(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid)
    body = observations(T0, PM10=12.5)
    tampered = observations(T0, PM10=99.5)
    header = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    assert api.post(suid, tampered, headers=header).status_code == 401
    assert stored(api, suid) == []
    assert api.post(suid, body, headers=header).status_code == 200
    assert stored(api, suid) == [(T0, "PM10", 12.5, True)]


def test_hash_covers_the_bytes_as_sent_even_reformatted_json(sensors):
    """The hash is over the raw bytes: the same JSON spelled differently fails."""
    suid = sensors.new_suid()
    secret = sensors.register(suid)
    body = b'[{"timestamp":%d,"readings":{"PM10":1}}]' % T0
    spaced = b'[ {"timestamp": %d, "readings": {"PM10": 1}} ]' % T0
    header = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    assert sensors.post(suid, spaced, headers=header).status_code == 401
    assert sensors.post(suid, body, headers=header).status_code == 200


def test_gzip_body_is_signed_as_sent_on_the_wire(sensors):
    suid = sensors.new_suid()
    secret = sensors.register(suid)
    body = observations(T0, T0 + 1)
    wire = gzip.compress(body)
    encoding = {"Content-Encoding": "gzip"}
    inner = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    response = sensors.post(suid, wire, headers={**encoding, **inner})
    assert response.status_code == 401
    outer = {"Authorization": f"OpenSmogHash {opensmog_hash(wire, secret)}"}
    response = sensors.post(suid, wire, headers={**encoding, **outer})
    assert response.status_code == 200, response.data
    assert len(stored(sensors, suid)) == 4


def test_content_type_is_not_required(sensors):
    suid = sensors.new_suid()
    secret = sensors.register(suid)
    for index, content_type in enumerate([None, "application/json", "text/plain"]):
        body = observations(T0 + index)
        headers = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
        if content_type:
            headers["Content-Type"] = content_type
        response = sensors.client.post(
            f"/v1/sensors/{suid}/readings", data=body, headers=headers
        )
        assert response.status_code == 200, (content_type, response.data)


def test_malformed_suid_is_400_on_every_route(sensors):
    body = observations(T0)
    for response in (
        sensors.post("not-a-uuid", body),
        sensors.post_rogue("not-a-uuid", body),
        sensors.client.put("/v1/sensors/not-a-uuid", json={}),
        sensors.client.get("/v1/sensors/not-a-uuid"),
        sensors.client.get("/v1/sensors/not-a-uuid/readings"),
    ):
        assert "SUID" in error_of(response, 400)


# --------------------------------------------------------------------------------------
# The rogue route
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "header", "status"),
    [
        pytest.param(False, None, 200, id="first-use-registers-rogue"),
        pytest.param(False, "wrong", 200, id="header-ignored"),
        pytest.param(True, None, 403, id="secure-403"),
        pytest.param(True, "correct", 403, id="secure-403-even-signed"),
    ],
)
def test_rogue_route(any_db_app, registered, header, status):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid) if registered else None
    body = observations(T0)
    headers = {}
    if header == "correct":
        headers["Authorization"] = f"OpenSmogHash {opensmog_hash(body, secret)}"
    elif header == "wrong":
        headers["Authorization"] = WRONG_HEADER
    response = api.post_rogue(suid, body, headers=headers)
    assert response.status_code == status, response.data
    if status == 200:
        assert response.data == b""
        assert sensor(api, suid)["secure"] is False
        assert stored(api, suid) == [
            (T0, "PM10", 12.5, False),
            (T0, "TEMP", 21.0, False),
        ]
    else:
        assert "secure" in error_of(response, 403)
        assert stored(api, suid) == []


def test_rogue_to_secure(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    assert api.post_rogue(suid, observations(T0)).status_code == 200
    assert api.post(suid, observations(T0 + 1)).status_code == 200
    assert sensor(api, suid)["secure"] is False

    secret = api.register(suid, SEED_METADATA)
    assert sensor(api, suid)["secure"] is True
    assert api.post(suid, observations(T0 + 2)).status_code == 403
    assert api.post_rogue(suid, observations(T0 + 2)).status_code == 403
    assert api.post(suid, observations(T0 + 2), secret).status_code == 200

    readings = stored(api, suid)
    assert [(ts, verified) for ts, _type, _value, verified in readings] == [
        (T0, False),
        (T0, False),
        (T0 + 1, False),
        (T0 + 1, False),
        (T0 + 2, True),
        (T0 + 2, True),
    ]
    assert sensor(api, suid)["reading_count"] == 6


# --------------------------------------------------------------------------------------
# Payload validation
# --------------------------------------------------------------------------------------


def obs(readings=None, timestamp=T0, **extra) -> dict:
    """One observation."""
    return {"timestamp": timestamp, "readings": readings or {"PM10": 1.0}, **extra}


GOOD = obs()

INVALID_PAYLOADS = [
    # (id, raw body, status, expected message fragments)
    ("not-json", b"[{", 400, ["not valid JSON"]),
    ("object", encode(GOOD), 400, ["must be a JSON array"]),
    ("string", b'"PM10"', 400, ["must be a JSON array"]),
    ("null", b"null", 400, ["must be a JSON array"]),
    ("empty-array", b"[]", 400, ["at least one observation"]),
    ("number-item", b"[5]", 400, ["observation 0: must be an object"]),
    (
        "list-item",
        encode([[T0, {"PM10": 1}]]),
        400,
        ["observation 0: must be an object"],
    ),
    (
        "missing-readings",
        encode([{"timestamp": T0}]),
        400,
        ["observation 0: readings must be an object with at least one reading"],
    ),
    (
        "empty-readings",
        encode([{"timestamp": T0, "readings": {}}]),
        400,
        ["observation 0: readings must be an object with at least one reading"],
    ),
    (
        "readings-list",
        encode([{"timestamp": T0, "readings": [["PM10", 1.0]]}]),
        400,
        ["observation 0: readings must be an object"],
    ),
    (
        "missing-timestamp",
        encode([{"readings": {"PM10": 1.0}}]),
        400,
        ["observation 0: give exactly one of timestamp (UNIX seconds) or age"],
    ),
    (
        "string-timestamp",
        encode([obs(timestamp=str(T0))]),
        400,
        ["observation 0: timestamp must be UNIX seconds"],
    ),
    (
        "boolean-timestamp",
        encode([obs(timestamp=True)]),
        400,
        ["observation 0: timestamp must be UNIX seconds"],
    ),
    (
        "timestamp-before-2000",
        encode([obs(timestamp=946684799)]),
        400,
        ["observation 0: timestamp 946684799 is out of range"],
    ),
    (
        "timestamp-milliseconds",
        encode([obs(timestamp=T0 * 1000)]),
        400,
        ["observation 0: timestamp", "out of range"],
    ),
    (
        "timestamp-beyond-skew",
        encode([obs(timestamp=NOW + 86400 + 3600)]),
        400,
        ["observation 0: timestamp", "out of range"],
    ),
    (
        "unknown-type",
        encode([obs({"RADON": 412})]),
        400,
        ["observation 0: unknown reading type 'RADON'"],
    ),
    (
        "lowercase-type",
        encode([obs({"pm10": 1.0})]),
        400,
        ["observation 0: unknown reading type 'pm10'"],
    ),
    (
        "dotted-type",
        encode([obs({"PM2.5": 1.0})]),
        400,
        ["observation 0: unknown reading type 'PM2.5'"],
    ),
    (
        "string-value",
        encode([obs({"PM10": "12.5"})]),
        400,
        ["observation 0: reading PM10 must be a number, not '12.5'"],
    ),
    (
        "boolean-value",
        encode([obs({"TEMP": True})]),
        400,
        ["observation 0: reading TEMP must be a number, not True"],
    ),
    (
        "null-value",
        encode([obs({"HUM": None})]),
        400,
        ["observation 0: reading HUM must be a number, not None"],
    ),
    (
        "object-value",
        encode([obs({"PRES": {"value": 1013}})]),
        400,
        ["observation 0: reading PRES must be a number"],
    ),
    (
        "nan-value",
        b'[{"timestamp": %d, "readings": {"PM10": NaN}}]' % T0,
        400,
        ["observation 0: reading PM10 must be a finite number"],
    ),
    (
        "infinity-value",
        b'[{"timestamp": %d, "readings": {"PM10": -Infinity}}]' % T0,
        400,
        ["observation 0: reading PM10 must be a finite number"],
    ),
    (
        "overflowing-value",
        b'[{"timestamp": %d, "readings": {"PM10": 1e999}}]' % T0,
        400,
        ["observation 0: reading PM10 must be a finite number"],
    ),
    (
        "unexpected-key",
        encode([obs(location={"latitude": 1})]),
        400,
        ["observation 0: unexpected key 'location'"],
    ),
    (
        "third-of-three",
        encode([obs(timestamp=T0), obs(timestamp=T0 + 1), obs({"XX": 1})]),
        400,
        ["observation 2: unknown reading type 'XX'"],
    ),
    (
        "two-bad-ones",
        encode([obs({"PM10": "x"}), obs(timestamp=T0 + 1), obs(timestamp=1)]),
        400,
        ["observation 0: reading PM10", "observation 2: timestamp 1 is out of range"],
    ),
]


@pytest.mark.parametrize("route", ["rogue", "secure"])
@pytest.mark.parametrize(
    ("body", "status", "messages"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID_PAYLOADS],
)
def test_invalid_payloads(sensors, route, body, status, messages):
    suid = sensors.new_suid()
    if route == "rogue":
        response = sensors.post_rogue(suid, body, content_type="application/json")
    else:
        secret = sensors.register(suid)
        response = sensors.post(suid, body, secret, content_type="application/json")
    message = error_of(response, status)
    for expected in messages:
        assert expected in message
    if route == "rogue":
        assert sensor(sensors, suid) is None, "a refused first post registers nothing"
    else:
        assert sensor(sensors, suid)["reading_count"] == 0
    assert stored(sensors, suid) == []


def test_a_bad_observation_stores_none_of_the_batch(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid)
    body = encode([obs(timestamp=T0), obs(timestamp=T0 + 1), obs({"PM10": None})])
    assert api.post(suid, body, secret).status_code == 400
    assert stored(api, suid) == []
    assert api.post_rogue(api.new_suid(), body).status_code == 400


def test_every_reading_type_is_accepted(sensors):
    types = ["CO", "PB", "NO2", "O3", "PM10", "PM2_5", "SO2", "TEMP", "HUM", "PRES"]
    suid = sensors.new_suid()
    secret = sensors.register(suid)
    readings = {name: float(index) - 3.5 for index, name in enumerate(types)}
    body = encode([{"timestamp": T0, "readings": readings}])
    assert sensors.post(suid, body, secret).status_code == 200
    assert {(t, v) for _ts, t, v, _ in stored(sensors, suid)} == set(readings.items())


@pytest.mark.parametrize(
    "timestamp", [946684800, NOW, NOW + 86400 - 60, float(T0)], ids=str
)
def test_timestamp_range_edges_are_accepted(sensors, timestamp):
    suid = sensors.new_suid()
    response = sensors.post_rogue(suid, encode([obs(timestamp=timestamp)]))
    assert response.status_code == 200, response.data
    assert stored(sensors, suid)[0][0] == int(timestamp)


def test_clock_skew_is_configurable(make_app):
    api = SensorActions(make_app(MAX_CLOCK_SKEW=0).test_client())
    response = api.post_rogue(
        api.new_suid(), encode([obs(timestamp=int(time.time()) + 600)])
    )
    assert "out of range" in error_of(response, 400)


def test_too_many_observations_is_413(any_db_app):
    api = actions(any_db_app, MAX_OBSERVATIONS=3)
    suid = api.new_suid()
    secret = api.register(suid)
    four = encode([obs(timestamp=T0 + i) for i in range(4)])
    message = error_of(api.post(suid, four, secret), 413)
    assert "CO2LOGSERVER_MAX_OBSERVATIONS" in message
    assert stored(api, suid) == []
    three = encode([obs(timestamp=T0 + i) for i in range(3)])
    assert api.post(suid, three, secret).status_code == 200


def test_default_batch_limit_is_1000(sensors):
    suid = sensors.new_suid()
    batch = [obs(timestamp=T0 + i) for i in range(1001)]
    assert sensors.post_rogue(suid, encode(batch)).status_code == 413
    assert sensors.post_rogue(suid, encode(batch[:1000])).status_code == 200
    assert sensor(sensors, suid)["reading_count"] == 1000


def test_many_errors_are_summarised(sensors):
    body = encode([obs({"XX": 1}, timestamp=T0 + i) for i in range(30)])
    message = error_of(sensors.post_rogue(sensors.new_suid(), body), 400)
    assert "observation 0:" in message
    assert "observation 19:" in message
    assert "observation 29:" not in message
    assert "10 more" in message
    assert len(message) < 5000


def test_authentication_is_answered_before_validation(sensors):
    """A sender without the SECRET learns nothing about its payload."""
    suid = sensors.new_suid()
    sensors.register(suid)
    bad = b"[{"
    assert sensors.post(suid, bad).status_code == 403
    wrong = sensors.post(suid, bad, headers={"Authorization": WRONG_HEADER})
    assert wrong.status_code == 401


# --------------------------------------------------------------------------------------
# Safe retries
# --------------------------------------------------------------------------------------


def test_resent_batch_is_stored_once(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid)
    batch = encode(SEED_READINGS)
    for _ in range(3):
        assert api.post(suid, batch, secret).status_code == 200
    assert len(stored(api, suid)) == 5
    assert sensor(api, suid)["reading_count"] == 5


def test_resent_buffer_stores_only_what_is_new_and_first_value_stands(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    secret = api.register(suid)
    assert api.post(suid, observations(T0, T0 + 1, PM10=1.0), secret).status_code == 200
    buffer = observations(T0, T0 + 1, T0 + 2, PM10=2.0)
    assert api.post(suid, buffer, secret).status_code == 200
    assert stored(api, suid) == [
        (T0, "PM10", 1.0, True),
        (T0 + 1, "PM10", 1.0, True),
        (T0 + 2, "PM10", 2.0, True),
    ]
    view = sensor(api, suid)
    assert view["reading_count"] == 3
    assert (view["first_reading"], view["last_reading"]) == (T0, T0 + 2)


def test_rogue_retries_are_safe_too(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    for value in (1.0, 2.0):
        assert api.post_rogue(suid, observations(T0, PM10=value)).status_code == 200
    assert stored(api, suid) == [(T0, "PM10", 1.0, False)]


def test_same_time_and_type_twice_in_one_batch_keeps_the_first(sensors):
    suid = sensors.new_suid()
    body = encode([obs({"PM10": 1.0}), obs({"PM10": 2.0})])
    assert sensors.post_rogue(suid, body).status_code == 200
    assert stored(sensors, suid) == [(T0, "PM10", 1.0, False)]
    assert sensor(sensors, suid)["reading_count"] == 1


def test_retry_rule_is_enforced_by_the_schema(any_db_app):
    app = any_db_app()
    api = SensorActions(app.test_client())
    suid = api.new_suid()
    api.register(suid)
    engine = get_store(app).engine
    assert inspect(engine).get_pk_constraint("readings")["constrained_columns"] == [
        "registration_id",
        "ts",
        "type",
    ]
    insert = text(
        "INSERT INTO readings (registration_id, ts, type, value) "
        "SELECT registration_id, :ts, 5, 1.0 FROM sensors WHERE suid = :suid"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"ts": T0, "suid": suid})
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"ts": T0, "suid": suid})


def test_readings_table_is_without_rowid_on_sqlite(app, sensors):
    sensors.post_rogue(sensors.new_suid(), observations(T0))
    with get_store(app).engine.connect() as conn:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'readings'"
        ).scalar_one()
    assert "WITHOUT ROWID" in sql.upper()


# --------------------------------------------------------------------------------------
# Re-registration
# --------------------------------------------------------------------------------------


def test_reregistration_invalidates_the_old_secret(any_db_app):
    api = actions(any_db_app)
    suid = api.new_suid()
    old = api.register(suid, SEED_METADATA)
    assert api.post(suid, observations(T0, PM10=1.0), old).status_code == 200

    new = api.register(suid, {"manufacturer": "ACME INC", "model": "X9001"}, old)
    assert new != old
    response = api.post(suid, observations(T0 + 1), old)
    assert "OpenSmogHash" in error_of(response, 401)
    assert api.post(suid, observations(T0 + 1, PM10=2.0), new).status_code == 200

    # Readings keep the registration they arrived under: still verified, unchanged.
    assert stored(api, suid) == [
        (T0, "PM10", 1.0, True),
        (T0 + 1, "PM10", 2.0, True),
    ]
    view = sensor(api, suid)
    assert (view["model"], view["secure"], view["reading_count"]) == ("X9001", True, 2)


def test_ended_registrations_keep_no_secret(app, sensors):
    """Old SECRETs are erased, so a later backup of the database holds none."""
    suid = sensors.new_suid()
    old = sensors.register(suid)
    new = sensors.register(suid, secret=old)
    with get_store(app).engine.connect() as conn:
        secrets = [
            row[0]
            for row in conn.execute(
                text("SELECT secret FROM registrations WHERE suid = :s ORDER BY id"),
                {"s": suid},
            )
        ]
    assert secrets == [None, new]
    assert old not in secrets


def test_reregistration_is_a_new_device(sensors):
    """The retry rule is per registration: a new device may resend the same time."""
    suid = sensors.new_suid()
    old = sensors.register(suid)
    assert sensors.post(suid, observations(T0, PM10=1.0), old).status_code == 200
    new = sensors.register(suid, secret=old)
    assert sensors.post(suid, observations(T0, PM10=2.0), new).status_code == 200
    assert sensors.post(suid, observations(T0, PM10=3.0), new).status_code == 200
    assert stored(sensors, suid) == [(T0, "PM10", 1.0, True), (T0, "PM10", 2.0, True)]


def test_reregistration_off_is_409(any_db_app):
    api = actions(any_db_app, ALLOW_REREGISTRATION=False)
    suid = api.new_suid()
    secret = api.register(suid, SEED_METADATA)
    response = api.client.put(f"/v1/sensors/{suid}", json={"model": "X9001"})
    assert "reset-sensor" in error_of(response, 409)
    assert secret not in response.get_data(as_text=True)
    assert api.post(suid, observations(T0), secret).status_code == 200
    assert sensor(api, suid)["model"] == "X9000"


def test_reregistration_off_still_lets_a_rogue_sensor_register(any_db_app):
    api = actions(any_db_app, ALLOW_REREGISTRATION=False)
    suid = api.new_suid()
    assert api.post_rogue(suid, observations(T0)).status_code == 200
    secret = api.register(suid)
    assert api.post(suid, observations(T0 + 1), secret).status_code == 200
    assert api.client.put(f"/v1/sensors/{suid}", json={}).status_code == 409


# --------------------------------------------------------------------------------------
# SECRETs stay out of logs
# --------------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog):
    """Every logger, the root and all named ones (SQLAlchemy's too), at DEBUG."""

    def enable() -> None:
        caplog.set_level(logging.DEBUG)
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                caplog.set_level(logging.DEBUG, logger=name)
                if not logger.propagate:
                    logger.addHandler(caplog.handler)
                    added.append(logger)

    added: list[logging.Logger] = []
    yield enable
    for logger in added:
        logger.removeHandler(caplog.handler)


def test_secret_never_appears_in_any_log_line(any_db_app, debug_logs, caplog):
    app = any_db_app(LOGLEVEL="DEBUG", ALLOW_REREGISTRATION=True)
    api = SensorActions(app.test_client())
    api.client.get("/v1/sensors")  # creates the schema and every logger
    debug_logs()
    suid = api.new_suid()
    secrets = [api.register(suid, SEED_METADATA)]
    body = encode(SEED_READINGS)
    assert api.post(suid, body, secrets[0]).status_code == 200
    assert api.post(suid, body, secrets[0]).status_code == 200  # a retry
    assert api.post(suid, observations(T0), "f" * 64).status_code == 401
    assert api.post(suid, observations(T0)).status_code == 403
    secrets.append(api.register(suid))
    assert api.post(suid, observations(T0), secrets[0]).status_code == 401
    assert api.post(suid, observations(T0 + 5), secrets[1]).status_code == 200
    assert api.post_rogue(suid, observations(T0)).status_code == 403
    api.client.get(f"/v1/sensors/{suid}/readings?format=csv").get_data()

    assert caplog.records, "nothing was logged: the capture does not work"
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)
    lines = [caplog.text] + [r.getMessage() for r in caplog.records]
    leaks = {
        f"{record.name} {record.levelname}: {record.getMessage()[:60]}…"
        for record in caplog.records
        for secret in secrets
        if secret in record.getMessage().lower()
    }
    assert not leaks, "a SECRET was logged"
    for secret in secrets:
        assert not any(secret in line.lower() for line in lines)


# --------------------------------------------------------------------------------------
# Done means (issue 3): a seed-document sensor, start to finish, in one test
# --------------------------------------------------------------------------------------


def test_seed_document_sensor_end_to_end(any_db_app):
    api = actions(any_db_app)
    suid = "123e4567-e89b-12d3-a456-426655440000"
    secret = api.register(suid, SEED_METADATA)
    body = encode(SEED_READINGS)
    assert api.post(suid, body, secret).status_code == 200
    tampered = body.replace(b"201.1", b"20.1")
    signature = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    assert api.post(suid, tampered, headers=signature).status_code == 401
    assert api.post(suid, body, secret).status_code == 200  # the lost-reply resend
    page = api.client.get(f"/v1/sensors/{suid}/readings").get_json()
    assert len(page["readings"]) == 5
    csv = api.client.get(f"/v1/sensors/{suid}/readings?format=csv")
    assert csv.get_data(as_text=True).count("\n") == 6

"""airrohr's "Send data to custom API" push, ``POST /airrohr/v1/push`` (SPEC §9.1).

Requests are the firmware's own bytes (captures in ``tests/data/airrohr``, rebuilt by
:mod:`tests.airrohr_firmware` from the firmware's source), written to a real
gunicorn on SQLite and on PostgreSQL over a plain socket; the many bad inputs go
through the Flask test client. Read back over ``/v1/sensors``.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from co2logserver.devices import suid_for
from tests.airrohr_firmware import (
    PATH,
    body_bytes,
    capture,
    request_bytes,
    send,
)
from tests.appserver import GunicornServer
from tests.test_metrics import Delta

ADMIN = "airrohr-test-admin-token"
NODE_VALUES = [
    ("samples", "612345"),
    ("min_micro", "28"),
    ("max_micro", "20079"),
    ("interval", "145000"),
    ("signal", "-67"),
]


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def live(request, tmp_path_factory) -> Iterator[GunicornServer]:
    """gunicorn -w 2 on a fresh SQLite file or PostgreSQL database, limits off."""
    from tests.servers import create_database, drop_database, replace_database

    workdir = tmp_path_factory.mktemp("airrohr")
    base, name = None, f"test_{uuid.uuid4().hex}"
    if request.param == "sqlite":
        db = str(workdir / "co2.sqlite")
    else:
        base = request.getfixturevalue("postgres_url")
        create_database(base, name)
        db = replace_database(base, name)
    settings = {
        "DB": db,
        "RATELIMIT_ENABLED": "False",
        "ADMIN_TOKENS": json.dumps([ADMIN]),
    }
    try:
        with GunicornServer(workdir, settings, workers=2) as server:
            yield server
    finally:
        if base is not None:
            drop_database(base, name)


def push(server: GunicornServer, chip: str, values, **kw):
    """Write the firmware's request for ``values`` of node esp8266-<chip>."""
    raw = request_bytes(
        "127.0.0.1", server.port, body_bytes(chip, values), chip, "5ccf7f" + chip, **kw
    )
    return send(server.url, raw)


def sensors_of(url: str, node: str) -> dict[str, dict]:
    """The node's sensors by alias."""
    found = requests.get(f"{url}/v1/sensors", params={"alias": node}, timeout=10)
    return {s["alias"]: s for s in found.json()["sensors"]}


def readings(url: str, name: str) -> list[dict]:
    """Every reading of the sensor of device ``name``."""
    page = requests.get(f"{url}/v1/sensors/{suid_for(name)}/readings", timeout=10)
    return page.json()["readings"]


def values_of(url: str, name: str) -> dict[str, tuple[float, str]]:
    """A sensor's readings as type -> (value, unit)."""
    return {r["type"]: (r["value"], r["unit"]) for r in readings(url, name)}


def assert_stored_empty_200(answer) -> None:
    """What the firmware counts as sent: 200-208, here exactly 200, no body."""
    assert answer.status == 200, answer.body
    assert answer.body == b""
    assert answer.headers["content-length"] == "0"
    assert "location" not in answer.headers


def test_the_capture_is_what_the_firmware_source_builds():
    values = [
        ("SDS_P1", "12.40"),
        ("SDS_P2", "8.10"),
        ("temperature", "20.90"),
        ("humidity", "50.10"),
        ("BME280_temperature", "21.53"),
        ("BME280_pressure", "98765.43"),
        ("BME280_humidity", "45.20"),
        *NODE_VALUES,
    ]
    body = body_bytes("1234567", values)
    built = request_bytes("192.168.234.1", 8080, body, "1234567", "5ccf7f1a2b3c")
    assert built == capture("esp8266-1234567-sds-dht-bme280.http")
    assert body.startswith(b'{"esp8266id": "1234567", "software_version": "NRZ-')
    with_auth = request_bytes("h", 80, b"{}", "1", "m", password="s3cret")
    assert b"\r\nHost: h\r\n" in with_auth
    assert b"Authorization: Basic OnMzY3JldA==\r\n" in with_auth  # ":s3cret"


def test_combined_push_lands_as_one_sensor_per_type(live):
    before = int(time.time())
    answer = send(live.url, capture("esp8266-1234567-sds-dht-bme280.http"))
    assert_stored_empty_200(answer)
    found = sensors_of(live.url, "esp8266-1234567")
    assert sorted(found) == [
        "airrohr:esp8266-1234567:BME280",
        "airrohr:esp8266-1234567:DHT",
        "airrohr:esp8266-1234567:NODE",
        "airrohr:esp8266-1234567:SDS",
    ]
    assert {s["protocol"] for s in found.values()} == {"airrohr"}
    assert all(s["secure"] is False for s in found.values())
    sds = "airrohr:esp8266-1234567:SDS"
    assert found[sds]["suid"] == "8b540c5a-d371-55de-b6b8-1446abf35133"
    assert values_of(live.url, sds) == {
        "PM10": (12.4, "µg/m³"),
        "PM2_5": (8.1, "µg/m³"),
    }
    assert values_of(live.url, "airrohr:esp8266-1234567:BME280") == {
        "TEMP": (21.53, "°C"),
        "HUM": (45.2, "%"),
        "PRES": (987.6543, "hPa"),  # 98765.43 Pa
    }
    assert values_of(live.url, "airrohr:esp8266-1234567:DHT") == {
        "TEMP": (20.9, "°C"),
        "HUM": (50.1, "%"),
    }
    assert values_of(live.url, "airrohr:esp8266-1234567:NODE") == {
        "SIGNAL": (-67, "dBm"),
        "samples": (612345, ""),
        "min_micro": (28, ""),
        "max_micro": (20079, ""),
        "interval": (145000, ""),
    }
    times = {r["timestamp"] for r in readings(live.url, sds)}
    assert len(times) == 1 and before <= times.pop() <= int(time.time())
    assert all(r["verified"] is False for r in readings(live.url, sds))


def test_a_resent_push_in_the_same_second_stores_nothing_twice(live):
    values = [("SDS_P1", "3.00"), ("SDS_P2", "2.00"), ("signal", "-70")]
    for attempt in range(5):  # until both posts fall in one server second
        chip = f"55{attempt}5555"
        while time.time() % 1 > 0.5:
            time.sleep(0.05)
        assert_stored_empty_200(push(live, chip, values))
        assert_stored_empty_200(push(live, chip, values))
        stored = readings(live.url, f"airrohr:esp8266-{chip}:SDS")
        if len({r["timestamp"] for r in stored}) == 1:
            break
    assert [(r["type"], r["value"]) for r in stored] == [("PM10", 3), ("PM2_5", 2)]
    assert len(readings(live.url, f"airrohr:esp8266-{chip}:NODE")) == 1


def test_gps_sets_the_node_s_private_location_shown_rounded(live):
    assert_stored_empty_200(send(live.url, capture("esp8266-7654321-sps30-gps.http")))
    found = sensors_of(live.url, "esp8266-7654321")
    assert sorted(found) == [
        "airrohr:esp8266-7654321:NODE",
        "airrohr:esp8266-7654321:SPS30",
    ]
    for sensor in found.values():
        assert sensor["location"] == {
            "latitude": 48.78,
            "longitude": 9.18,
            "elevation": 245,
        }
    exact = requests.get(
        f"{live.url}/v1/sensors/{suid_for('airrohr:esp8266-7654321:SPS30')}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    ).json()
    assert exact["location"] == {
        "latitude": 48.778512,
        "longitude": 9.180047,
        "elevation": 245.3,
    }
    assert values_of(live.url, "airrohr:esp8266-7654321:SPS30") == {
        "PM1": (3.21, "µg/m³"),
        "PM2_5": (4.56, "µg/m³"),
        "PM4": (5.1, "µg/m³"),
        "PM10": (5.43, "µg/m³"),
        "sps30_n05": (21.04, ""),
        "sps30_n1": (25.11, ""),
        "sps30_n25": (25.3, ""),
        "sps30_n4": (25.33, ""),
        "sps30_n10": (25.35, ""),
        "sps30_ts": (0.52, ""),
    }


def test_gps_without_a_fix_stores_the_readings_and_no_location(live):
    raw = capture("esp8266-2222222-sds-gps-nofix.http")
    assert_stored_empty_200(send(live.url, raw))
    found = sensors_of(live.url, "esp8266-2222222")
    assert sorted(found) == [
        "airrohr:esp8266-2222222:NODE",
        "airrohr:esp8266-2222222:SDS",
    ]
    assert all(s["location"] is None for s in found.values())
    assert values_of(live.url, "airrohr:esp8266-2222222:SDS") == {
        "PM10": (30.1, "µg/m³"),
        "PM2_5": (20.2, "µg/m³"),
    }


def test_an_esp32_node_is_named_by_its_x_sensor(live):
    raw = capture("esp32-a1b2c3d4e5f6-sps30-sht3x.http")
    assert b"\r\nX-MAC-ID: esp32-\r\n" in raw
    assert_stored_empty_200(send(live.url, raw))
    found = sensors_of(live.url, "esp32-a1b2c3d4e5f6")
    assert sorted(found) == [
        "airrohr:esp32-a1b2c3d4e5f6:NODE",
        "airrohr:esp32-a1b2c3d4e5f6:SHT3X",
        "airrohr:esp32-a1b2c3d4e5f6:SPS30",
    ]
    sps30 = found["airrohr:esp32-a1b2c3d4e5f6:SPS30"]
    assert sps30["suid"] == "1ef50376-2c8a-5dff-ac12-dd048e08a4da"  # docs vector
    assert values_of(live.url, "airrohr:esp32-a1b2c3d4e5f6:SHT3X") == {
        "TEMP": (17.35, "°C"),
        "HUM": (72.4, "%"),
    }


def test_a_secure_sensor_needs_its_secret_as_the_basic_password(live):
    chip, sds = "4444444", "airrohr:esp8266-4444444:SDS"
    node = "airrohr:esp8266-4444444:NODE"
    values = [("SDS_P1", "1.00"), ("SDS_P2", "1.00"), ("signal", "-60")]
    assert_stored_empty_200(push(live, chip, values))
    put = requests.put(f"{live.url}/v1/sensors/{suid_for(sds)}", json={}, timeout=10)
    assert put.status_code == 200
    secret = put.text
    assert len(secret) == 64 and len(secret) < 65  # fits LEN_CFG_PASSWORD
    time.sleep(1.05)  # a new second: nothing below is a duplicate of the first
    second = [("SDS_P1", "2.00"), ("SDS_P2", "2.00"), ("signal", "-61")]

    refused = push(live, chip, second)
    assert refused.status == 403
    assert "Password" in json.loads(refused.body)["error"]
    wrong = push(live, chip, second, user="airrohr", password="0" * 64)
    assert wrong.status == 401
    assert "SECRET" in json.loads(wrong.body)["error"]
    # Nothing of a refused push is stored, not even its rogue NODE values.
    assert len(readings(live.url, sds)) == 2
    assert len(readings(live.url, node)) == 1

    assert_stored_empty_200(push(live, chip, second, password=secret))
    stored = readings(live.url, sds)
    assert [(r["value"], r["verified"]) for r in stored] == [
        (1, False),
        (1, False),
        (2, True),
        (2, True),
    ]
    assert len(readings(live.url, node)) == 2
    # A User in the firmware's form does not matter; the password does.
    assert_stored_empty_200(push(live, chip, second, user="me", password=secret))


def test_gzip_body_and_oversized_body(live):
    body = body_bytes("6666666", [("SDS_P1", "7.00"), ("SDS_P2", "6.00")])
    headers = {"X-Sensor": "esp8266-6666666", "Content-Type": "application/json"}
    zipped = requests.post(
        live.url + PATH,
        data=gzip.compress(body),
        headers={**headers, "Content-Encoding": "gzip"},
        timeout=10,
        allow_redirects=False,
    )
    assert (zipped.status_code, zipped.content) == (200, b"")
    assert values_of(live.url, "airrohr:esp8266-6666666:SDS") == {
        "PM10": (7, "µg/m³"),
        "PM2_5": (6, "µg/m³"),
    }
    values = [(f"X{i}_v", "1.00") for i in range(40000)]  # > 1 MiB
    big = requests.post(
        live.url + PATH,
        data=body_bytes("6666667", values),
        headers={**headers, "X-Sensor": "esp8266-6666667"},
        timeout=30,
    )
    assert big.status_code == 413
    assert "error" in big.json()
    assert sensors_of(live.url, "esp8266-6666667") == {}


def test_the_limit_counts_per_node(tmp_path):
    settings = {
        "DB": str(tmp_path / "co2.sqlite"),
        "RATELIMIT_ENABLED": "True",
        "RATELIMIT_STORAGE": "memory://",
        # Per day: a window that cannot roll over mid-test.
        "RATELIMIT_SENSOR": "3 per day",
        "RATELIMIT_ADDRESS": "1000 per day",
    }
    values = [("SDS_P1", "1.00")]
    with GunicornServer(tmp_path, settings, workers=1) as server:
        for _ in range(3):
            assert_stored_empty_200(push(server, "8888881", values))
        refused = push(server, "8888881", values)
        assert refused.status == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "CO2LOGSERVER_RATELIMIT_SENSOR" in json.loads(refused.body)["error"]
        assert_stored_empty_200(push(server, "8888882", values))


# --- through the test client: mappings and every bad input ---------------------


@pytest.fixture
def db_client(any_db_app):
    """A test client of the app on SQLite and on PostgreSQL."""
    return any_db_app().test_client()


def post(client, body: bytes | str, sensor: str | None = "esp8266-99", **headers):
    """POST a body as the firmware does (X-Sensor unless ``sensor`` is None)."""
    if sensor is not None:
        headers["X-Sensor"] = sensor
    return client.post(PATH, data=body, headers=headers)


def client_values(client, name: str) -> dict[str, float]:
    page = client.get(f"/v1/sensors/{suid_for(name)}/readings").json
    return {r["type"]: r["value"] for r in page["readings"]}


def test_every_value_type_of_the_firmware_maps_onto_the_registry(db_client):
    raw = capture("esp8266-3333333-pms-scd30-bmp280-sht3x-ds18b20-dnms.http")
    head, _, body = raw.partition(b"\r\n\r\n")
    reply = post(db_client, body, sensor="esp8266-3333333")
    assert (reply.status_code, reply.data) == (200, b"")
    node = "airrohr:esp8266-3333333"
    assert client_values(db_client, f"{node}:PMS") == {
        "PM1": 2,
        "PM10": 6,
        "PM2_5": 4,
    }
    assert client_values(db_client, f"{node}:BMP280") == {
        "TEMP": 19.84,
        "PRES": 1013.25,
    }
    assert client_values(db_client, f"{node}:SHT3X") == {"TEMP": 19.2, "HUM": 61.7}
    assert client_values(db_client, f"{node}:SCD30") == {
        "TEMP": 22.31,
        "HUM": 40.12,
        "CO2": 612,
    }
    assert client_values(db_client, f"{node}:DS18B20") == {"TEMP": 8.5}
    assert client_values(db_client, f"{node}:DNMS") == {
        "NOISE_LAEQ": 48.3,
        "NOISE_LA_MIN": 41.2,
        "NOISE_LA_MAX": 63.9,
    }


def test_other_sensors_and_unprefixed_values(client):
    body = json.dumps(
        {
            "esp8266id": "77",
            "sensordatavalues": [
                {"value_type": "HPM_P1", "value": "9.00"},
                {"value_type": "HPM_P2", "value": 5},  # a number is fine too
                {"value_type": "NPM_N25", "value": "11.5"},
                {"value_type": "IPS_P01", "value": "0.3"},
                {"value_type": "P1", "value": "612.34"},  # PPD42NS: a count
                {"value_type": "ratioP1", "value": "0.12"},
                {"value_type": "BMP_pressure", "value": "100000"},
            ],
        }
    )
    assert post(client, body, sensor="esp32-a1b2c3d4e5f6").status_code == 200
    node = "airrohr:esp32-a1b2c3d4e5f6"
    assert client_values(client, f"{node}:HPM") == {"PM10": 9, "PM2_5": 5}
    assert client_values(client, f"{node}:NPM") == {"npm_n25": 11.5}
    assert client_values(client, f"{node}:IPS") == {"ips_p01": 0.3}
    assert client_values(client, f"{node}:PPD") == {"p1": 612.34, "ratiop1": 0.12}
    assert client_values(client, f"{node}:BMP") == {"PRES": 1000}


def test_without_x_sensor_the_node_is_esp8266_chip_id(client):
    body = body_bytes("1010101", [("SDS_P1", "4.00")])
    assert post(client, body, sensor=None).status_code == 200
    assert client_values(client, "airrohr:esp8266-1010101:SDS") == {"PM10": 4}
    numeric = b'{"esp8266id": 2020202, "sensordatavalues": []}'
    assert post(client, numeric, sensor=None).status_code == 200


def test_gps_only_push_places_the_node(client):
    values = [("GPS_lat", "52.520008"), ("GPS_lon", "13.404954")]
    assert (
        post(client, body_bytes("31", values), sensor="esp8266-31").status_code == 200
    )
    view = client.get(f"/v1/sensors/{suid_for('airrohr:esp8266-31:NODE')}").json
    assert view["location"] == {"latitude": 52.52, "longitude": 13.4}


def test_ignored_gps_fields_and_stored_readings_are_counted(client):
    delta = Delta(client)
    assert post(client, capture("esp8266-7654321-sps30-gps.http").partition(
        b"\r\n\r\n"
    )[2]).status_code == 200  # fmt: skip
    assert delta.of("co2logserver_fields_ignored_total", protocol="airrohr") == 1
    stored = delta.of("co2logserver_protocol_readings_stored_total", protocol="airrohr")
    assert stored == 15


@pytest.mark.parametrize(
    "value, shown",
    [
        ('"abc"', "'abc'"),
        ('""', "''"),
        ('"nan"', "'nan'"),
        ('"inf"', "'inf'"),
        ('"1,5"', "'1,5'"),
        ('"12.4 "', "'12.4 '"),
        ("null", "None"),
        ("true", "True"),
        ('{"v": 1}', "{'v': 1}"),
        ("1e999", "inf"),
    ],
)
def test_a_value_that_is_not_a_number_is_400_naming_it(db_client, value, shown):
    body = (
        '{"esp8266id": "5", "sensordatavalues":[{"value_type":"SDS_P1","value":"1"},'
        f'{{"value_type":"BME280_pressure","value":{value}}}]}}'
    )
    reply = post(db_client, body, sensor="esp8266-5")
    assert reply.status_code == 400
    error = reply.json["error"]
    assert f"sensordatavalues[1]: BME280_pressure: value {shown} is not a number" in (
        error
    )
    assert db_client.get("/v1/sensors?alias=esp8266-5").json["sensors"] == []


@pytest.mark.parametrize(
    "body, sensor, expected",
    [
        (b'{"sensordatavalues": []}', None, "X-Sensor header"),
        (b'{"esp8266id": "a b", "sensordatavalues": []}', None, "esp8266id 'a b'"),
        (b'{"esp8266id": true, "sensordatavalues": []}', None, "esp8266id True"),
        (b'{"sensordatavalues": []}', "esp8266 1", "X-Sensor 'esp8266 1'"),
        (b'{"sensordatavalues": []}', "x" * 65, "X-Sensor 'xxxxxx"),
        (b"not json", "esp8266-1", "not valid JSON"),
        (b"[]", "esp8266-1", "JSON object"),
        (b'{"esp8266id": "1"}', "esp8266-1", '"sensordatavalues" must be a list'),
        (b'{"sensordatavalues": [1]}', "esp8266-1", "sensordatavalues[0]: must be"),
        (
            b'{"sensordatavalues": [{"value": "1"}]}',
            "esp8266-1",
            'sensordatavalues[0]: must be an object with a "value_type"',
        ),
        (
            b'{"sensordatavalues": [{"value_type": "_P1", "value": "1"}]}',
            "esp8266-1",
            "value_type '_P1' is not a name",
        ),
        (
            b'{"sensordatavalues": [{"value_type": "SDS P1", "value": "1"}]}',
            "esp8266-1",
            "value_type 'SDS P1'",
        ),
        (
            b'{"sensordatavalues": [{"value_type": "SDS_P1", "value": "1"},'
            b'{"value_type": "SDS_P1", "value": "1"}]}',
            "esp8266-1",
            "sensordatavalues[1]: value_type SDS_P1 is sent twice",
        ),
        (
            b'{"sensordatavalues": [{"value_type": "temperature", "value": "1"},'
            b'{"value_type": "DHT_temperature", "value": "2"}]}',
            "esp8266-1",
            "temperature and DHT_temperature are both TEMP of sensor DHT",
        ),
        (
            b'{"sensordatavalues": [{"value_type": "GPS_lat", "value": "1"}]}',
            "esp8266-1",
            "GPS_lat and GPS_lon must be sent together",
        ),
        (
            b'{"sensordatavalues": [{"value_type": "GPS_lat", "value": "91"},'
            b'{"value_type": "GPS_lon", "value": "1"}, '
            b'{"value_type": "SDS_P1", "value": "1"}]}',
            "esp8266-1",
            "GPS_lat 91, GPS_lon 1 is not a position",
        ),
    ],
)
def test_malformed_pushes_are_400_naming_what_is_wrong(client, body, sensor, expected):
    reply = post(client, body, sensor=sensor)
    assert reply.status_code == 400, reply.json
    assert expected in reply.json["error"]
    assert client.get("/v1/sensors").json["sensors"] == []


@pytest.mark.parametrize(
    "authorization, expected",
    [
        ("Bearer abc", "scheme 'Bearer' is not supported"),
        ("Basic !!!", "not Basic base64"),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), "not Basic base64"),
    ],
)
def test_a_bad_authorization_header_is_400(client, authorization, expected):
    body = body_bytes("1", [("SDS_P1", "1")])
    reply = post(client, body, Authorization=authorization)
    assert reply.status_code == 400
    assert expected in reply.json["error"]


def test_an_empty_password_is_no_credential(client):
    body = body_bytes("12", [("SDS_P1", "1")])
    assert post(client, body, sensor="esp8266-12").status_code == 200
    client.put(f"/v1/sensors/{suid_for('airrohr:esp8266-12:SDS')}", json={})
    user_only = "Basic " + base64.b64encode(b"me:").decode()
    reply = post(client, body, sensor="esp8266-12", Authorization=user_only)
    assert reply.status_code == 403
    assert "airrohr configuration page" in reply.json["error"]


def test_only_post_is_routed(client):
    assert client.get(PATH).status_code == 405
    assert client.post(PATH + "/").status_code == 404


@pytest.mark.postgres
def test_a_database_outage_is_503_with_retry_after_without_spool(
    postgres_server, build_app
):
    app = build_app({"DB": postgres_server.url, "RETRY_AFTER": 7, "SPOOL_MAX_BYTES": 0})
    client = app.test_client()
    node = f"esp8266-{uuid.uuid4().int % 10**9}"
    body = body_bytes(node.removeprefix("esp8266-"), [("SDS_P1", "5.00")])
    assert post(client, body, sensor=node).status_code == 200
    postgres_server.stop()
    try:
        down = post(client, body, sensor=node)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "7"
        assert "error" in down.json
    finally:
        postgres_server.start()
    time.sleep(1.05)
    assert post(client, body, sensor=node).status_code == 200
    assert len(readings_via(client, f"airrohr:{node}:SDS")) == 2


@pytest.mark.postgres
def test_a_push_during_an_outage_is_spooled_and_stored(
    postgres_server, build_app, tmp_path
):
    """airrohr keeps nothing it could not send: the spool takes it (SPEC §10)."""
    app = build_app({"DB": postgres_server.url, "SPOOL_DIR": str(tmp_path / "sp")})
    client = app.test_client()
    node = f"esp8266-{uuid.uuid4().int % 10**9}"
    body = body_bytes(node.removeprefix("esp8266-"), [("SDS_P1", "5.00")])
    assert post(client, body, sensor=node).status_code == 200
    time.sleep(1.05)
    postgres_server.stop()
    try:
        during = post(client, body, sensor=node)
        assert during.status_code == 200 and during.data == b""
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = client.get(f"/v1/sensors/{suid_for(f'airrohr:{node}:SDS')}/readings")
        if reply.status_code == 200 and len(reply.json["readings"]) == 2:
            break
        time.sleep(0.2)
    assert len(readings_via(client, f"airrohr:{node}:SDS")) == 2


def readings_via(client, name: str) -> list[dict]:
    return client.get(f"/v1/sensors/{suid_for(name)}/readings").json["readings"]

"""The device path of SPEC §9 that every firmware protocol adapter feeds.

Exercised through :func:`co2logserver.devices.submit_devices` against real SQLite and
PostgreSQL, and read back over the API: identity (uuid5 SUIDs, aliases, lookup), the
§6 authorization table through a protocol's credential slot, learned quantities,
one transaction per request, and the migration that gives older databases ``alias``.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest

from co2logserver import devices
from co2logserver.devices import DeviceReadings, DeviceRequest
from co2logserver.errors import BadRequest, Forbidden, WrongCredential
from co2logserver.store import get_store


@pytest.fixture
def db_app(any_db_app):
    """The app on SQLite and on PostgreSQL."""
    return any_db_app()


def first_post(app, node: str) -> None:
    """A node's SDS sensor posts once (a rogue sensor now, with an alias)."""
    now = int(time.time())
    device = airrohr(node, "SDS", (now - 60, "PM10", 1))
    assert submit(app, DeviceRequest("airrohr", [device])).stored == 1


def submit(app, request: DeviceRequest):
    return devices.submit_devices(get_store(app), app.config, request)


def airrohr(node: str, kind: str, *readings, location=None) -> DeviceReadings:
    return DeviceReadings(f"airrohr:{node}:{kind}", list(readings), location)


def test_suid_vectors_follow_the_spec_namespace():
    namespace = uuid.UUID("5d317e9b-2b47-4d1f-a6a9-bbeee45190db")
    for name in ("airrohr:esp8266-1234567:SDS", "lorawan:0004a30b001c0530"):
        assert devices.suid_for(name) == str(uuid.uuid5(namespace, name))
    # Published in docs/protocols.rst: a change here breaks every device out there.
    assert devices.suid_for("airrohr:esp8266-1234567:SDS") == (
        "8b540c5a-d371-55de-b6b8-1446abf35133"
    )


def test_one_node_becomes_one_sensor_per_type_with_alias(db_app):
    now = int(time.time())
    result = submit(
        db_app,
        DeviceRequest(
            "airrohr",
            [
                airrohr("esp8266-42", "SDS", (now, "PM10", 12.4), (now, "PM2_5", 8.0)),
                airrohr("esp8266-42", "BME280", (now, "TEMP", 21.5)),
                airrohr("esp8266-42", "DHT", (now, "TEMP", 20.1)),
            ],
        ),
    )
    assert result.stored == 4
    client = db_app.test_client()
    found = client.get("/v1/sensors?alias=esp8266-42").json["sensors"]
    assert sorted(s["alias"] for s in found) == [
        "airrohr:esp8266-42:BME280",
        "airrohr:esp8266-42:DHT",
        "airrohr:esp8266-42:SDS",
    ]
    assert {s["protocol"] for s in found} == {"airrohr"}
    assert all(s["secure"] is False for s in found)
    # Two temperature sensors on one node stay two series.
    dht = devices.suid_for("airrohr:esp8266-42:DHT")
    readings = client.get(f"/v1/sensors/{dht}/readings").json["readings"]
    assert [(r["type"], r["value"], r["unit"]) for r in readings] == [
        ("TEMP", 20.1, "°C")
    ]
    exact = client.get("/v1/sensors?alias=airrohr:esp8266-42:SDS").json["sensors"]
    assert [s["suid"] for s in exact] == [devices.suid_for("airrohr:esp8266-42:SDS")]
    assert client.get("/v1/sensors?alias=esp8266-4").json["sensors"] == []
    opensmog = client.get("/v1/sensors").json["sensors"]
    assert len(opensmog) == 3


def test_resend_stores_nothing_twice(db_app):
    now = int(time.time())
    request = DeviceRequest(
        "influx", [DeviceReadings("influx:t,d=x", [(now, "CO2", 1)])]
    )
    assert submit(db_app, request).stored == 1
    assert submit(db_app, request).stored == 0


def test_learned_quantity_is_stored_read_back_and_filtered(db_app, build_app):
    now = int(time.time())
    device = DeviceReadings("influx:power,plug=a", [(now, "watts", 42.0)])
    assert submit(db_app, DeviceRequest("influx", [device])).stored == 1
    suid = devices.suid_for("influx:power,plug=a")
    client = db_app.test_client()
    page = client.get(f"/v1/sensors/{suid}/readings?type=watts").json
    assert [(r["type"], r["value"], r["unit"]) for r in page["readings"]] == [
        ("watts", 42.0, "")
    ]
    assert client.get(f"/v1/sensors/{suid}/readings?type=volts").status_code == 400
    # A fresh app on the same database (another worker) reads the same name.
    other = build_app(dict(db_app.config))
    page = other.test_client().get(f"/v1/sensors/{suid}/readings").json
    assert page["readings"][0]["type"] == "watts"


def test_refused_new_name_is_left_out_and_counted(db_path, build_app):
    app = build_app({"DB": db_path, "ACCEPT_NEW_READING_TYPE": lambda n: n != "junk"})
    now = int(time.time())
    device = DeviceReadings("lorawan:00aa", [(now, "junk", 1.0), (now, "TEMP", 3.0)])
    result = submit(app, DeviceRequest("lorawan", [device], network_verified=True))
    assert (result.stored, result.refused_names) == (1, ["junk"])


def test_secure_sensor_needs_its_secret_in_the_slot(db_app):
    now = int(time.time())
    name = "airrohr:esp8266-7:SDS"
    suid = devices.suid_for(name)
    client = db_app.test_client()
    first_post(db_app, "esp8266-7")
    secret = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    assert len(secret) == 64

    def post(credential, value):
        device = airrohr("esp8266-7", "SDS", (now + value, "PM10", value))
        return submit(db_app, DeviceRequest("airrohr", [device], credential))

    with pytest.raises(Forbidden):
        post(None, 2)
    with pytest.raises(WrongCredential):
        post("0" * 64, 3)
    assert post(secret, 4).stored == 1
    readings = client.get(f"/v1/sensors/{suid}/readings").json["readings"]
    assert [(r["value"], r["verified"]) for r in readings] == [(1, False), (4, True)]


def test_one_bad_device_stores_nothing_of_the_request(db_app):
    now = int(time.time())
    name = "airrohr:esp8266-8:SDS"
    client = db_app.test_client()
    first_post(db_app, "esp8266-8")
    client.put(f"/v1/sensors/{devices.suid_for(name)}", json={})
    request = DeviceRequest(
        "airrohr",
        [
            airrohr("esp8266-8", "AAA", (now, "PM10", 5)),  # sorts first: new, rogue
            airrohr("esp8266-8", "SDS", (now, "PM10", 6)),  # secure: no credential
        ],
    )
    with pytest.raises(Forbidden):
        submit(db_app, request)
    found = client.get("/v1/sensors?alias=esp8266-8").json["sensors"]
    assert [s["alias"] for s in found] == [name]


def test_bad_values_and_times_name_device_and_reading(app):
    now = int(time.time())
    request = DeviceRequest(
        "influx",
        [
            DeviceReadings("influx:m", [(now, "TEMP", float("nan"))]),
            DeviceReadings("influx:n", [(now + 10**7, "HUM", 1.0)]),
            DeviceReadings("influx:o", [(now, "bad\x00name", 1.0)]),
        ],
    )
    with pytest.raises(BadRequest) as raised:
        submit(app, request)
    message = raised.value.message
    assert "influx:m: TEMP: value nan" in message
    assert "influx:n: HUM: time" in message
    assert "influx:o: 'bad\\x00name'" in message and "printable" in message


def test_a_reading_with_two_problems_is_named_with_both(app):
    request = DeviceRequest(
        "influx",
        [
            DeviceReadings("influx:ok", [(int(time.time()), "TEMP", 20.0)]),
            DeviceReadings("influx:p", [(5, "HUM", True)]),
        ],
    )
    with pytest.raises(BadRequest) as raised:
        submit(app, request)
    message = raised.value.message
    assert message.count("influx:p: HUM: ") == 2
    assert "influx:p: HUM: value must be a number" in message
    assert "influx:p: HUM: time 5 is out of range" in message
    assert "influx:ok" not in message  # a good reading is no problem
    assert app.test_client().get("/v1/sensors").json["sensors"] == []  # none stored


def test_network_verified_devices_and_private_location(db_app):
    now = int(time.time())
    device = DeviceReadings(
        "lorawan:0004a30b001c0530",
        [(now, "PM2_5", 3.5)],
        location=(52.123456, 13.654321, 40.4),
    )
    submit(db_app, DeviceRequest("lorawan", [device], network_verified=True))
    suid = devices.suid_for("lorawan:0004a30b001c0530")
    view = db_app.test_client().get(f"/v1/sensors/{suid}").json
    assert view["secure"] is True
    assert view["location"] == {"latitude": 52.12, "longitude": 13.65, "elevation": 40}
    readings = db_app.test_client().get(f"/v1/sensors/{suid}/readings").json
    assert readings["readings"][0]["verified"] is True


def test_a_rolled_back_learned_quantity_is_forgotten(app):
    now = int(time.time())
    client = app.test_client()
    secure = "airrohr:esp8266-9:SDS"
    first_post(app, "esp8266-9")
    client.put(f"/v1/sensors/{devices.suid_for(secure)}", json={})
    refused = DeviceRequest(
        "airrohr",
        [
            airrohr("esp8266-9", "AAA", (now, "first_new", 1)),
            airrohr("esp8266-9", "SDS", (now, "PM10", 2)),
        ],
    )
    with pytest.raises(Forbidden):
        submit(app, refused)
    # The code the rolled-back request allocated is free again and not cached.
    ok = DeviceRequest("influx", [DeviceReadings("influx:x", [(now, "second_new", 7)])])
    submit(app, ok)
    suid = devices.suid_for("influx:x")
    page = client.get(f"/v1/sensors/{suid}/readings").json
    assert page["readings"][0]["type"] == "second_new"
    assert client.get(f"/v1/sensors/{suid}/readings?type=first_new").status_code == 400


def test_a_1_0_dev_database_gains_the_alias_column(db_path, build_app):
    build_app({"DB": db_path}).test_client().post(
        f"/rogue/v1/sensors/{uuid.uuid4()}/readings",
        json=[{"timestamp": int(time.time()), "readings": {"PM10": 1.0}}],
    )
    with sqlite3.connect(db_path) as conn:  # as 1.0-dev left it: no alias
        conn.execute("DROP INDEX ix_sensors_alias")
        conn.execute("ALTER TABLE sensors DROP COLUMN alias")
    app = build_app({"DB": db_path})
    now = int(time.time())
    device = DeviceReadings("lorawan:01", [(now, "TEMP", 1)])
    submit(app, DeviceRequest("lorawan", [device]))
    sensors = app.test_client().get("/v1/sensors").json["sensors"]
    assert sorted(str(s["alias"]) for s in sensors) == ["None", "lorawan:01"]


def test_documented_vectors_are_the_server_s(tmp_path):
    """Every SUID in docs/protocols/devices.rst is what the server computes."""
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs/protocols/devices.rst").read_text()
    pairs = re.findall(r"\* - ``([a-z0-9]+:[^`]+)``\n\s+- ``([0-9a-f-]{36})``", page)
    assert len(pairs) >= 4
    for name, suid in pairs:
        assert devices.suid_for(name) == suid, name


def test_register_device_secures_a_whole_node_under_one_secret(db_app):
    """The CLI takes the alias; every sensor of the node shares the one SECRET."""
    from click.testing import CliRunner

    from co2logserver.cli import main

    now = int(time.time())
    node = [
        airrohr("esp8266-55", "SDS", (now - 9, "PM10", 1)),
        airrohr("esp8266-55", "BME280", (now - 9, "TEMP", 2)),
    ]
    submit(db_app, DeviceRequest("airrohr", node))
    database = db_app.config["CO2LOGSERVER_DB"]
    result = CliRunner().invoke(main, ["-f", database, "register-device", "esp8266-55"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert len(secret) == 64
    later = [
        airrohr("esp8266-55", "SDS", (now, "PM10", 3)),
        airrohr("esp8266-55", "BME280", (now, "TEMP", 4)),
    ]
    with pytest.raises(Forbidden):
        submit(db_app, DeviceRequest("airrohr", later))
    assert submit(db_app, DeviceRequest("airrohr", later, secret)).stored == 2
    views = db_app.test_client().get("/v1/sensors?alias=esp8266-55").json["sensors"]
    assert [v["secure"] for v in views] == [True, True]
    assert secret not in result.stderr


def test_register_device_of_a_device_not_seen_yet(db_app):
    from click.testing import CliRunner

    from co2logserver.cli import main

    runner, database = CliRunner(), db_app.config["CO2LOGSERVER_DB"]
    unknown = runner.invoke(main, ["-f", database, "register-device", "nothing"])
    assert unknown.exit_code != 0 and "full device name" in unknown.output
    name = "lorawan:00aa00aa00aa00aa"
    result = runner.invoke(main, ["-f", database, "register-device", name])
    assert result.exit_code == 0, result.output
    suid = devices.suid_for("lorawan:00aa00aa00aa00aa")
    view = db_app.test_client().get(f"/v1/sensors/{suid}").json
    assert (view["secure"], view["alias"]) == (True, "lorawan:00aa00aa00aa00aa")


def test_counts_of_every_sensor_of_a_request_follow(db_app):
    """One UPDATE counts readings and first/last times of all sensors of a request."""
    now = int(time.time())
    node = [
        airrohr("esp8266-66", "SDS", (now - 20, "PM10", 1), (now - 20, "PM2_5", 2)),
        airrohr("esp8266-66", "BME280", (now - 20, "TEMP", 3)),
        airrohr("esp8266-66", "NODE", (now - 20, "SIGNAL", -70)),
    ]
    assert submit(db_app, DeviceRequest("airrohr", node)).stored == 4
    later = [
        airrohr("esp8266-66", "SDS", (now - 10, "PM10", 4)),
        airrohr("esp8266-66", "BME280", (now - 20, "TEMP", 9), (now - 10, "TEMP", 5)),
    ]
    assert submit(db_app, DeviceRequest("airrohr", later)).stored == 2
    views = db_app.test_client().get("/v1/sensors?alias=esp8266-66").json["sensors"]
    counts = {
        v["alias"].rsplit(":", 1)[1]: (
            v["reading_count"],
            v["first_reading"],
            v["last_reading"],
        )
        for v in views
    }
    assert counts == {
        "SDS": (3, now - 20, now - 10),
        "BME280": (2, now - 20, now - 10),
        "NODE": (1, now - 20, now - 20),
    }

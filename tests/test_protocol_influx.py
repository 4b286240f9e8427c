"""InfluxDB writes (SPEC §9.2) as Tasmota, Telegraf, airrohr and InfluxDB's clients
send them: the request shapes built as their sources build them, the §6 credential
table through ``p``/Basic/``Token``, dedup of resent batches, the error shapes of
both APIs, the ``/ping`` and ``/query`` stubs, rate limits, and outages.

The many bad-input cases run through the Flask test client on SQLite and
PostgreSQL; :func:`test_over_real_http` repeats the main paths over HTTP against
gunicorn. Parser rules are in ``tests/test_lineprotocol.py``; the comparison with a
real ``influxd`` in ``tests/test_influx_differential.py``.
"""

from __future__ import annotations

import base64
import gzip
import re
import time
import uuid

import pytest
import requests

from co2logserver.devices import suid_for
from tests.appserver import GunicornServer

TS = 1_700_000_000
#: Tasmota's POST (xdrv_59_influxdb.ino): lines built by InfluxDbProcessJson from
#: its state and sensor JSON, no timestamps, the trailing newline trimmed.
TASMOTA_DEVICE = "tasmota_1A2B3C"
TASMOTA_BODY = (
    f"uptimesec,device={TASMOTA_DEVICE},sensor=device value=1449\n"
    f"heap,device={TASMOTA_DEVICE},sensor=device value=29\n"
    f"power1,device={TASMOTA_DEVICE},sensor=device value=1\n"
    f"rssi,device={TASMOTA_DEVICE},sensor=wifi value=100\n"
    f"signal,device={TASMOTA_DEVICE},sensor=wifi value=-44\n"
    f"temperature,device={TASMOTA_DEVICE},sensor=ds18b20,id=01144A0CB2AA value=27.50\n"
    f"temperature,device={TASMOTA_DEVICE},sensor=htu21 value=28.23\n"
    f"humidity,device={TASMOTA_DEVICE},sensor=htu21 value=39.7\n"
    f"dewpoint,device={TASMOTA_DEVICE},sensor=htu21 value=13.20"
).encode()
TASMOTA_HEADERS = {
    "User-Agent": "Tasmota/14.1.0 (ESP8266EX)",
    "Content-Type": "text/plain",
    "Accept-Encoding": "identity;q=1,chunked;q=0.1,*;q=0",
    "Connection": "close",
}
HTU21 = f"influx:temperature,device={TASMOTA_DEVICE},sensor=htu21"
#: Telegraf's outputs.influxdb (plugins/outputs/influxdb/http.go): ns timestamps,
#: no precision parameter, gzip by default, Basic auth.
TELEGRAF_BODY = (
    f"environment,host=pi4,location=kitchen temperature=21.5,humidity=45.25,"
    f'pressure=1013.2,co2=652i,door="open",occupied=true {TS}123456789\n'
    f"environment,host=pi4,location=kitchen temperature=21.75,humidity=45.0,"
    f'pressure=1013.1,co2=655i,door="open",occupied=false {TS + 10}000000001\n'
    f"cpu,cpu=cpu-total,host=pi4 usage_idle=97.5,usage_user=1.25 {TS}000000000\n"
).encode()
TELEGRAF_HEADERS = {
    "User-Agent": "Telegraf/1.30.1 Go/1.22.1",
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Encoding": "gzip",
}
FORM = "application/x-www-form-urlencoded"
KITCHEN = "influx:environment,host=pi4,location=kitchen"
#: airrohr's "Send to InfluxDB" (create_influxdb_string_from_data and
#: sendData): form content type, X-Sensor, numbers unquoted, strings quoted.
AIRROHR_BODY = (
    b"feinstaub,node=esp8266-1234567 SDS_P1=12.40,SDS_P2=8.10,"
    b"BME280_temperature=21.50,BME280_pressure=101325.00,BME280_humidity=45.20,"
    b'GPS_lat=48.778700,GPS_lon=9.180100,GPS_height=250.00,GPS_date="12/02/2026",'
    b"samples=1234567,min_micro=30,max_micro=20000,interval=145000,signal=-66\n"
)
AIRROHR_HEADERS = {
    "User-Agent": "NRZ-2024-135/1234567/5ccf7f123456",
    "Content-Type": "application/x-www-form-urlencoded",
    "X-Sensor": "esp8266-1234567",
    "X-MAC-ID": "esp8266-5ccf7f123456",
}


@pytest.fixture
def db_app(any_db_app):
    """The app on SQLite and on PostgreSQL."""
    return any_db_app()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def readings(client, name: str) -> list[tuple[int, str, float]]:
    """``(timestamp, type, value)`` of a device's stored readings."""
    answer = client.get(f"/v1/sensors/{suid_for(name)}/readings")
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.data
    return [(r["timestamp"], r["type"], r["value"]) for r in answer.json["readings"]]


def aliases(client, lookup: str) -> set[str]:
    """The aliases ``/v1/sensors?alias=`` finds."""
    found = client.get("/v1/sensors", query_string={"alias": lookup}).json
    return {s["alias"] for s in found["sensors"]}


def all_aliases(client) -> set[str]:
    return {s["alias"] for s in client.get("/v1/sensors").json["sensors"]}


def register(client, name: str) -> str:
    """Register a device's sensor as secure; its SECRET."""
    answer = client.put(f"/v1/sensors/{suid_for(name)}", json={})
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_tasmota_batch_is_one_sensor_per_series(db_app):
    client = db_app.test_client()
    before = int(time.time())
    answer = client.post(
        "/write?db=tasmota", data=TASMOTA_BODY, headers=TASMOTA_HEADERS
    )
    assert answer.status_code == 204, answer.data
    assert answer.data == b""
    assert answer.headers["X-Influxdb-Version"]
    [(ts, kind, value)] = readings(client, HTU21)
    assert (kind, value) == ("TEMP", 28.23)
    assert before <= ts <= time.time()  # no timestamp: the receive time
    ds18b20 = (
        f"influx:temperature,device={TASMOTA_DEVICE},id=01144A0CB2AA,sensor=ds18b20"
    )
    assert [r[1:] for r in readings(client, ds18b20)] == [("TEMP", 27.5)]
    humidity = f"influx:humidity,device={TASMOTA_DEVICE},sensor=htu21"
    assert [r[1:] for r in readings(client, humidity)] == [("HUM", 39.7)]
    signal = f"influx:signal,device={TASMOTA_DEVICE},sensor=wifi"
    assert [r[1:] for r in readings(client, signal)] == [("SIGNAL", -44.0)]
    # Tasmota's "rssi" is WiFi quality in percent, not dBm: a quantity of its own.
    rssi = f"influx:rssi,device={TASMOTA_DEVICE},sensor=wifi"
    assert [r[1:] for r in readings(client, rssi)] == [("rssi", 100.0)]
    assert len(all_aliases(client)) == 9
    assert aliases(client, HTU21.partition(":")[2]) == {HTU21}
    listed = client.get("/v1/sensors", query_string={"alias": HTU21}).json["sensors"]
    assert [(s["protocol"], s["secure"]) for s in listed] == [("influx", False)]


def test_telegraf_batch_with_gzip_and_basic_auth(db_app):
    client = db_app.test_client()
    created = client.post(
        "/query",
        data="q=CREATE+DATABASE+%22telegraf%22",
        headers={**TELEGRAF_HEADERS, "Content-Type": FORM},
    )
    assert (created.status_code, created.json) == (
        200,
        {"results": [{"statement_id": 0}]},
    )
    headers = {**TELEGRAF_HEADERS, "Authorization": basic("telegraf", "metricsmetrics")}
    answer = client.post(
        "/write?db=telegraf", data=gzip.compress(TELEGRAF_BODY), headers=headers
    )
    assert answer.status_code == 204, answer.data
    assert sorted(readings(client, KITCHEN)) == [
        (TS, "CO2", 652.0),
        (TS, "HUM", 45.25),
        (TS, "PRES", 1013.2),
        (TS, "TEMP", 21.5),
        (TS + 10, "CO2", 655.0),
        (TS + 10, "HUM", 45.0),
        (TS + 10, "PRES", 1013.1),
        (TS + 10, "TEMP", 21.75),
    ]
    cpu = "influx:cpu,cpu=cpu-total,host=pi4"
    assert sorted(readings(client, cpu)) == [
        (TS, "usage_idle", 97.5),
        (TS, "usage_user", 1.25),
    ]


def test_airrohr_lines_land_on_its_custom_api_sensors(db_app):
    client = db_app.test_client()
    answer = client.post(
        "/write?db=sensorcommunity", data=AIRROHR_BODY, headers=AIRROHR_HEADERS
    )
    assert answer.status_code == 204, answer.data
    node = "airrohr:esp8266-1234567"
    assert aliases(client, "esp8266-1234567") == {
        f"{node}:SDS", f"{node}:BME280", f"{node}:NODE",
    }  # fmt: skip
    assert {r[1:] for r in readings(client, f"{node}:SDS")} == {
        ("PM10", 12.4), ("PM2_5", 8.1),
    }  # fmt: skip
    assert {r[1:] for r in readings(client, f"{node}:BME280")} == {
        ("TEMP", 21.5), ("PRES", 1013.25), ("HUM", 45.2),
    }  # fmt: skip
    assert ("SIGNAL", -66.0) in {r[1:] for r in readings(client, f"{node}:NODE")}
    # The same SUID the custom API's posts of this node use (SPEC §9.1).
    assert suid_for(f"{node}:SDS") == "8b540c5a-d371-55de-b6b8-1446abf35133"


def test_airrohr_lines_follow_the_airrohr_rules():
    from co2logserver.protocols.influx import parse_write

    def airrohr_device_readings(node, fields, ts):
        line = f"feinstaub,node={node} " + ",".join(f"{k}={v}" for k, v in fields)
        body = f"{line} {ts}\n".encode()
        return parse_write(body, "s", ts, None, "").request.devices

    devices = airrohr_device_readings(
        "esp32-a1b2c3",
        [("SPS30_P0", 1.0), ("SPS30_P4", 4.0), ("temperature", 20.0),
         ("humidity", 50.0), ("SCD30_co2_ppm", 640.0), ("DNMS_noise_LAeq", 45.5),
         ("BMP280_pressure", 99000.0), ("GPS_lat", -200.0), ("GPS_lon", -200.0)],
        TS,
    )  # fmt: skip
    by_name = {d.name: (d.readings, d.location) for d in devices}
    assert by_name == {
        "airrohr:esp32-a1b2c3:SPS30": ([(TS, "PM1", 1.0), (TS, "PM4", 4.0)], None),
        "airrohr:esp32-a1b2c3:DHT": ([(TS, "TEMP", 20.0), (TS, "HUM", 50.0)], None),
        "airrohr:esp32-a1b2c3:SCD30": ([(TS, "CO2", 640.0)], None),
        "airrohr:esp32-a1b2c3:DNMS": ([(TS, "NOISE_LAEQ", 45.5)], None),
        "airrohr:esp32-a1b2c3:BMP280": ([(TS, "PRES", 990.0)], None),
    }


def test_a_measurement_without_tags_and_unicode_names(db_app):
    client = db_app.test_client()
    body = f"温度,地点=東京 値=21.5 {TS}\nroom value=3 {TS}\n".encode()
    assert client.post("/write?db=x&precision=s", data=body).status_code == 204
    assert readings(client, "influx:温度,地点=東京") == [(TS, "値", 21.5)]
    assert readings(client, "influx:room") == [(TS, "room", 3.0)]


def test_strings_and_booleans_are_counted_not_stored(db_app):
    client = db_app.test_client()

    def ignored() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        found = re.search(
            r'co2logserver_fields_ignored_total\{protocol="influx"\} (\S+)', text
        )
        return float(found.group(1)) if found else 0.0

    start = ignored()
    body = f'm,s=1 note="hi",ok=t,x=1 {TS}\nm,s=2 only="text" {TS}\n'.encode()
    assert client.post("/write?db=x&precision=s", data=body).status_code == 204
    assert ignored() - start == 3
    assert readings(client, "influx:m,s=1") == [(TS, "x", 1.0)]
    assert aliases(client, "influx:m,s=2") == set()  # no reading: no sensor


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [
        (None, f"{TS}987654321"), ("n", f"{TS}987654321"), ("ns", f"{TS}987654321"),
        ("u", f"{TS}987654"), ("us", f"{TS}987654"), ("ms", f"{TS}987"),
        ("s", f"{TS}"), ("m", f"{TS // 60}"), ("h", f"{TS // 3600}"),
    ],
)  # fmt: skip
def test_each_v1_precision_gives_the_second(db_app, precision, stamp):
    client = db_app.test_client()
    query = "" if precision is None else f"&precision={precision}"
    answer = client.post(f"/write?db=x{query}", data=f"p value=1 {stamp}".encode())
    assert answer.status_code == 204, answer.data
    expected = {"m": TS // 60 * 60, "h": TS // 3600 * 3600}.get(precision, TS)
    assert readings(client, "influx:p") == [(expected, "p", 1.0)]


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
def test_each_v2_precision_gives_the_second(db_app, precision):
    client = db_app.test_client()
    per_second = {"ns": 10**9, "us": 10**6, "ms": 1000, "s": 1}[precision]
    stamp = TS * per_second + per_second // 2
    answer = client.post(
        f"/api/v2/write?org=home&bucket=b&precision={precision}",
        data=f"p value=2 {stamp}".encode(),
        headers={"Authorization": "Token anything"},
    )
    assert answer.status_code == 204, answer.data
    assert readings(client, "influx:p") == [(TS, "p", 2.0)]


def test_resent_batch_stores_nothing_twice_and_first_in_a_second_stands(db_app):
    client = db_app.test_client()
    body = f"t value=1 {TS}000000000\nt value=2 {TS}500000000\n".encode()
    assert client.post("/write?db=x", data=body).status_code == 204
    assert client.post("/write?db=x", data=body).status_code == 204
    assert readings(client, "influx:t") == [(TS, "t", 1.0)]
    found = client.get("/v1/sensors", query_string={"alias": "influx:t"}).json
    assert found["sensors"][0]["reading_count"] == 1


def test_a_malformed_line_stores_nothing_and_names_its_line(db_app):
    client = db_app.test_client()
    body = f"good value=1 {TS}\n# comment\ngood value=2 {TS + 1}\nbad,t= value=3\n"
    answer = client.post("/write?db=x&precision=s", data=body.encode())
    assert answer.status_code == 400
    assert set(answer.json) == {"error"}
    assert "line 4: missing tag value" in answer.json["error"]
    assert aliases(client, "influx:good") == set()


def test_a_time_out_of_range_names_the_device(db_app):
    client = db_app.test_client()
    answer = client.post("/write?db=x&precision=s", data=b"old value=1 631152000")
    assert answer.status_code == 400
    assert (
        "influx:old" in answer.json["error"] and "out of range" in answer.json["error"]
    )


@pytest.mark.parametrize(
    ("url", "headers", "message"),
    [
        ("/write", {}, "database is required"),
        ("/write?db=", {}, "database is required"),
        ("/write?db=x&precision=rfc3339", {}, "invalid precision 'rfc3339'"),
        ("/write?db=x", {"Content-Encoding": "br"}, "Content-Encoding 'br'"),
        ("/write?db=x", {"Content-Encoding": "gzip"}, "gzip"),
        ("/write?db=x", {"Authorization": "Basic !!"}, "Basic base64"),
    ],
)
def test_v1_errors_are_influxdb_1_shaped(client, url, headers, message):
    answer = client.post(url, data=b"m value=1", headers=headers)
    assert 400 <= answer.status_code < 500
    assert set(answer.json) == {"error"}
    assert message in answer.json["error"]
    assert "X-Platform-Error-Code" not in answer.headers


@pytest.mark.parametrize(
    ("url", "body", "status", "code", "message"),
    [
        ("/api/v2/write", b"m value=1", 400, "invalid", "bucket is required"),
        ("/api/v2/write?bucket=b&precision=n", b"m value=1", 400, "invalid",
         "invalid precision 'n'"),
        ("/api/v2/write?bucket=b", b"m value=1\nm", 400, "invalid", "line 2"),
    ],
)  # fmt: skip
def test_v2_errors_are_influxdb_2_shaped(client, url, body, status, code, message):
    answer = client.post(url, data=body)
    assert answer.status_code == status
    assert answer.json["code"] == code
    assert message in answer.json["message"]
    assert answer.headers["X-Platform-Error-Code"] == code


def test_too_large_in_both_shapes(make_app):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    body = b"m value=1\n" * 200
    v1 = client.post("/write?db=x", data=body)
    assert v1.status_code == 413 and set(v1.json) == {"error"}
    v2 = client.post("/api/v2/write?bucket=b", data=body)
    assert v2.status_code == 413
    assert v2.headers["X-Platform-Error-Code"] == v2.json["code"] == "request too large"
    zipped = client.post(
        "/write?db=x", data=gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    assert zipped.status_code == 413


def test_secure_sensor_needs_its_secret_in_every_slot(db_app):
    client = db_app.test_client()
    secret = register(client, HTU21)
    body = f"temperature,device={TASMOTA_DEVICE},sensor=htu21 value=1 {TS}"

    def write(url: str, headers=None, shift=0):
        line = body.replace(f" {TS}", f" {TS + shift}")
        return client.post(url, data=line.encode(), headers=headers or {})

    refused = write("/write?db=t&precision=s")
    assert refused.status_code == 403
    assert "SECRET" in refused.json["error"] and secret not in refused.json["error"]
    assert write("/write?db=t&precision=s&u=x&p=wrong").status_code == 401
    assert (
        write(
            "/write?db=t&precision=s", {"Authorization": basic("u", "no")}
        ).status_code
        == 401
    )
    v2 = write("/api/v2/write?bucket=b&precision=s", {"Authorization": "Token nope"})
    assert (
        v2.status_code == 401 and v2.headers["X-Platform-Error-Code"] == "unauthorized"
    )
    assert write("/api/v2/write?bucket=b&precision=s").json["code"] == "forbidden"
    v1, v2 = "/write?db=t&precision=s", "/api/v2/write?bucket=b&precision=s"
    accepted = [
        write(f"{v1}&u=DVES_USER&p={secret}", shift=1),
        # Tasmota sends its password twice: p= and "Authorization: Token <password>".
        write(f"{v1}&u=DVES_USER&p={secret}", {"Authorization": f"Token {secret}"}, 2),
        write(v1, {"Authorization": basic("telegraf", secret)}, 3),
        write(v1, {"Authorization": f"Token me:{secret}"}, 4),
        write(v2, {"Authorization": f"Token {secret}"}, 5),
        write(v2, {"Authorization": f"Bearer {secret}"}, 6),
    ]
    assert [a.status_code for a in accepted] == [204] * 6
    assert [r[0] - TS for r in readings(client, HTU21)] == [1, 2, 3, 4, 5, 6]


def test_form_content_type_is_read_as_the_raw_body(client):
    # "a=b&c" would be a form; as line protocol it is a bad line, named as such.
    answer = client.post(
        "/write?db=x",
        data=b"a=b&c=d",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400
    assert "line 1" in answer.json["error"]


def test_ping_answers_like_influxd(client):
    for method in (client.get, client.head):
        answer = method("/ping")
        assert answer.status_code == 204
        assert answer.headers["X-Influxdb-Version"].startswith("1.")
        assert answer.headers["X-Influxdb-Build"].startswith("co2logserver")
    # Tasmota checks the server with GET /ping?verbose=true and wants a 200.
    verbose = client.get("/ping?verbose=true&u=x&p=y")
    assert verbose.status_code == 200
    assert verbose.json == {"version": verbose.headers["X-Influxdb-Version"]}
    # Tasmota set up for InfluxDB 2 checks GET /health for a 200 instead.
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "q", "status", "body"),
    [
        ("post", 'CREATE DATABASE "telegraf"', 200, {"results": [{"statement_id": 0}]}),
        ("get", "create database tasmota", 200, {"results": [{"statement_id": 0}]}),
        ("post", "CREATE DATABASE a; CREATE DATABASE b", 200,
         {"results": [{"statement_id": 0}, {"statement_id": 1}]}),
    ],
)  # fmt: skip
def test_query_stub_creates_databases(client, method, q, status, body):
    if method == "post":
        answer = client.post("/query", data={"q": q})
    else:
        answer = client.get("/query", query_string={"q": q})
    assert (answer.status_code, answer.json) == (status, body)


@pytest.mark.parametrize(
    "q", ["SHOW DATABASES", "SELECT * FROM cpu", "DROP DATABASE x"]
)
def test_query_stub_refuses_other_statements(client, q):
    answer = client.post("/query", data={"q": q})
    assert answer.status_code == 400
    assert "CREATE DATABASE" in answer.json["error"]
    assert client.post("/query").json == {"error": 'missing required parameter "q"'}


def test_rate_limit_is_503_for_v1_and_429_for_v2(make_app):
    client = make_app(
        RATELIMIT_ENABLED=True, RATELIMIT_SENSOR="2 per minute"
    ).test_client()
    line = f"r value=1 {TS}".encode()
    v1 = [client.post("/write?db=home&u=me&precision=s", data=line) for _ in range(3)]
    assert [a.status_code for a in v1] == [204, 204, 503]
    assert (
        set(v1[2].json) == {"error"}
        and "CO2LOGSERVER_RATELIMIT_SENSOR" in v1[2].json["error"]
    )
    assert 1 <= int(v1[2].headers["Retry-After"]) <= 61
    # Another database (another Telegraf or Tasmota) has a budget of its own.
    assert client.post("/write?db=other&precision=s", data=line).status_code == 204
    url = "/api/v2/write?org=o&bucket=b&precision=s"
    v2 = [client.post(url, data=line) for _ in range(3)]
    assert [a.status_code for a in v2] == [204, 204, 429]
    assert v2[2].headers["X-Platform-Error-Code"] == "too many requests"
    assert 1 <= int(v2[2].headers["Retry-After"]) <= 61


@pytest.mark.postgres
def test_storage_outage_is_503_with_retry_after(postgres_server, build_app):
    """With the spool off; with it on, the batch is spooled: see the next test."""
    settings = {"DB": postgres_server.url, "RETRY_AFTER": 7, "SPOOL_MAX_BYTES": 0}
    client = build_app(settings).test_client()
    line = f"o value=1 {TS}".encode()
    assert client.post("/write?db=x&precision=s", data=line).status_code == 204
    postgres_server.stop()
    try:
        v1 = client.post("/write?db=x&precision=s", data=line)
        v2 = client.post("/api/v2/write?bucket=b&precision=s", data=line)
    finally:
        postgres_server.start()
    assert (v1.status_code, v1.headers["Retry-After"], set(v1.json)) == (
        503,
        "7",
        {"error"},
    )
    assert (v2.status_code, v2.headers["Retry-After"]) == (503, "7")
    assert v2.headers["X-Platform-Error-Code"] == v2.json["code"] == "unavailable"


@pytest.mark.postgres
def test_a_batch_during_an_outage_is_spooled_and_stored(
    postgres_server, build_app, tmp_path
):
    """Telegraf drops a batch it cannot send: the spool keeps it (SPEC §10)."""
    app = build_app({"DB": postgres_server.url, "SPOOL_DIR": str(tmp_path / "sp")})
    client = app.test_client()
    series = f"spooled{uuid.uuid4().hex[:8]}"
    first = f"{series} value=1 {TS}".encode()
    assert client.post("/write?db=x&precision=s", data=first).status_code == 204
    postgres_server.stop()
    try:
        batch = f"{series} value=2 {TS + 1}\n{series} value=3 {TS + 2}".encode()
        assert client.post("/write?db=x&precision=s", data=batch).status_code == 204
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(readings(client, f"influx:{series}")) == 3:
            break
        time.sleep(0.2)
    assert [value for _ts, _name, value in readings(client, f"influx:{series}")] == [
        1.0,
        2.0,
        3.0,
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_server(request, tmp_path):
    """gunicorn with two workers on a fresh SQLite file or PostgreSQL database."""
    db = str(tmp_path / "co2.sqlite")
    if request.param == "postgres":
        db = request.getfixturevalue("pg_database_url")
    with GunicornServer(tmp_path, {"DB": db, "RATELIMIT_ENABLED": "False"}) as server:
        yield server.url


def test_over_real_http(live_server):
    url = live_server
    http = requests.Session()
    assert http.get(f"{url}/ping", timeout=10).status_code == 204
    assert http.get(f"{url}/ping?verbose=true", timeout=10).status_code == 200
    created = http.post(
        f"{url}/query", data={"q": 'CREATE DATABASE "telegraf"'}, timeout=10
    )
    assert created.json() == {"results": [{"statement_id": 0}]}
    # Telegraf: gzip and Basic; the same batch twice stores it once.
    batch = gzip.compress(TELEGRAF_BODY)
    headers = {**TELEGRAF_HEADERS, "Authorization": basic("telegraf", "x")}
    for _ in range(2):
        sent = http.post(
            f"{url}/write?db=telegraf", data=batch, headers=headers, timeout=10
        )
        assert sent.status_code == 204, sent.text
    kitchen = http.get(
        f"{url}/v1/sensors/{suid_for(KITCHEN)}/readings", timeout=10
    ).json()
    assert len(kitchen["readings"]) == 8
    # Tasmota, then as a secure sensor with its password in p=.
    sent = http.post(
        f"{url}/write?db=tasmota",
        data=TASMOTA_BODY,
        headers=TASMOTA_HEADERS,
        timeout=10,
    )
    assert sent.status_code == 204
    secret = http.put(f"{url}/v1/sensors/{suid_for(HTU21)}", json={}, timeout=10).text
    line = f"temperature,device={TASMOTA_DEVICE},sensor=htu21 value=22.5 {TS}".encode()
    assert (
        http.post(f"{url}/write?db=t&precision=s", data=line, timeout=10).status_code
        == 403
    )
    ok = http.post(
        f"{url}/write?db=t&precision=s&u=DVES_USER&p={secret}", data=line, timeout=10
    )
    assert ok.status_code == 204
    # airrohr's form content type is no form; a bad line stores nothing.
    sent = http.post(
        f"{url}/write?db=sensorcommunity",
        data=AIRROHR_BODY,
        headers=AIRROHR_HEADERS,
        timeout=10,
    )
    assert sent.status_code == 204
    bad = http.post(
        f"{url}/write?db=x&precision=s",
        data=f"n value=1 {TS}\nn value=".encode(),
        timeout=10,
    )
    assert bad.status_code == 400 and "line 2" in bad.json()["error"]
    assert (
        http.get(f"{url}/v1/sensors?alias=influx:n", timeout=10).json()["sensors"] == []
    )
    v2 = http.post(f"{url}/api/v2/write?org=o", data=line, timeout=10)
    assert v2.status_code == 400
    assert v2.headers["X-Platform-Error-Code"] == v2.json()["code"] == "invalid"
    assert v2.json()["message"]

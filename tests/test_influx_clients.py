"""InfluxDB's own clients write to co2logserver as to an InfluxDB (issue #15).

PyPI's ``influxdb`` (the 1.x client: create_database, write_points, ping),
``influxdb-client`` (the 2.x client's synchronous write API) and Debian's ``influx``
CLI (``INSERT`` through ``/write``) run against gunicorn over real HTTP, as a rogue
and as a secure sensor, and what they wrote is read back through ``/v1``.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from co2logserver.devices import suid_for
from tests.appserver import GunicornServer
from tests.servers import find_binary

TS = 1_700_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One gunicorn on a fresh SQLite file for the module."""
    workdir = tmp_path_factory.mktemp("influx-clients")
    settings = {"DB": str(workdir / "co2.sqlite"), "RATELIMIT_ENABLED": "False"}
    with GunicornServer(workdir, settings, workers=2) as running:
        yield running


def readings(url: str, name: str) -> list[tuple[int, str, float]]:
    answer = requests.get(f"{url}/v1/sensors/{suid_for(name)}/readings", timeout=10)
    assert answer.status_code == 200, answer.text
    return sorted(
        (r["timestamp"], r["type"], r["value"]) for r in answer.json()["readings"]
    )


def register(url: str, name: str) -> str:
    answer = requests.put(f"{url}/v1/sensors/{suid_for(name)}", json={}, timeout=10)
    assert answer.status_code == 200
    return answer.text


def test_influxdb_v1_client(server):
    from influxdb import InfluxDBClient
    from influxdb.exceptions import InfluxDBClientError

    host, port = "127.0.0.1", server.port
    client = InfluxDBClient(host=host, port=port, database="home", timeout=10)
    assert client.ping() == "1.8.10"
    client.create_database("home")
    points = [
        {"measurement": "climate", "tags": {"room": "lab", "floor": "2"},
         "time": TS + i, "fields": {"temperature": 21.5 + i, "co2": 640 + i,
                                    "window": "closed"}}
        for i in range(3)
    ]  # fmt: skip
    assert client.write_points(points, time_precision="s") is True
    name = "influx:climate,floor=2,room=lab"
    assert readings(server.url, name) == [
        (TS, "CO2", 640.0), (TS, "TEMP", 21.5),
        (TS + 1, "CO2", 641.0), (TS + 1, "TEMP", 22.5),
        (TS + 2, "CO2", 642.0), (TS + 2, "TEMP", 23.5),
    ]  # fmt: skip
    # Secure: the SECRET as the password (Basic), gzip on, line protocol as given.
    secret = register(server.url, name)
    line = [f"climate,room=lab,floor=2 temperature=30 {TS + 10}"]
    # Without a username the client sends its default root:root: a wrong SECRET.
    default = InfluxDBClient(host=host, port=port, database="home", gzip=True)
    with pytest.raises(InfluxDBClientError) as refused:
        default.write_points(line, time_precision="s", protocol="line")
    assert refused.value.code == 401
    wrong = InfluxDBClient(host=host, port=port, username="u", password="x" * 64,
                           database="home", gzip=True)  # fmt: skip
    with pytest.raises(InfluxDBClientError) as refused:
        wrong.write_points(line, time_precision="s", protocol="line")
    assert refused.value.code == 401
    owner = InfluxDBClient(host=host, port=port, username="u", password=secret,
                           database="home", gzip=True)  # fmt: skip
    assert owner.write_points(line, time_precision="s", protocol="line") is True
    assert (TS + 10, "TEMP", 30.0) in readings(server.url, name)


def test_influxdb_v2_client(server):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.rest import ApiException

    name = "influx:air,station=roof"
    with InfluxDBClient(
        url=server.url, token="unused", org="home", timeout=10_000
    ) as client:
        assert client.ping() is True
        write = client.write_api(write_options=SYNCHRONOUS)
        point = (
            Point("air").tag("station", "roof").field("pm2_5", 7.5).field("pm10", 12)
            .field("ok", True).time(TS, WritePrecision.S)
        )  # fmt: skip
        write.write(bucket="sensors", record=point)
        write.write(bucket="sensors", record=f"air,station=roof pm2_5=8.5 {TS + 1}000",
                    write_precision=WritePrecision.MS)  # fmt: skip
        with pytest.raises(ApiException) as refused:
            write.write(bucket="sensors", record="air,station=roof pm2_5=")
        assert refused.value.status == 400
        assert refused.value.headers["X-Platform-Error-Code"] == "invalid"
        assert "line 1" in str(refused.value.body)
    assert readings(server.url, name) == [
        (TS, "PM10", 12.0), (TS, "PM2_5", 7.5), (TS + 1, "PM2_5", 8.5),
    ]  # fmt: skip
    secret = register(server.url, name)
    for token, status in (("wrong", 401), (secret, None)):
        with InfluxDBClient(url=server.url, token=token, org="home",
                            enable_gzip=True) as client:  # fmt: skip
            write = client.write_api(write_options=SYNCHRONOUS)
            record = f"air,station=roof pm2_5=9.5 {TS + 2}"
            if status is None:
                write.write("sensors", record=record, write_precision=WritePrecision.S)
                continue
            with pytest.raises(ApiException) as refused:
                write.write("sensors", record=record, write_precision=WritePrecision.S)
            assert refused.value.status == status
            assert refused.value.headers["X-Platform-Error-Code"] == "unauthorized"
    assert (TS + 2, "PM2_5", 9.5) in readings(server.url, name)


def influx_cli(server, *args: str) -> subprocess.CompletedProcess:
    binary = find_binary("influx", "influxdb-client")
    return subprocess.run(
        [binary, "-host", "127.0.0.1", "-port", str(server.port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_influx_cli_inserts(server):
    before = int(time.time())
    done = influx_cli(
        server,
        "-database",
        "cli",
        "-execute",
        "INSERT kitchen,sensor=cli temperature=19.5",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [(ts, kind, value)] = readings(server.url, "influx:kitchen,sensor=cli")
    assert (kind, value) == ("TEMP", 19.5) and before <= ts <= time.time()
    timed = influx_cli(
        server, "-database", "cli", "-precision", "s",
        "-execute", f"INSERT kitchen,sensor=cli temperature=20.5 {TS}",
    )  # fmt: skip
    assert timed.returncode == 0, timed.stdout + timed.stderr
    assert (TS, "TEMP", 20.5) in readings(server.url, "influx:kitchen,sensor=cli")
    bad = influx_cli(
        server, "-database", "cli", "-execute", "INSERT kitchen,sensor=cli"
    )
    assert "missing fields" in bad.stdout + bad.stderr

"""The dashboard pages (Flask client) and the aggregation API on SQLite and PostgreSQL.

The pages in a real browser are in ``test_browser.py``.
"""

from __future__ import annotations

import datetime
import json
import re
import time

import pytest
from sqlalchemy import insert

from co2logserver import dashboard_data
from co2logserver.store import dashboard as dashboard_sql
from co2logserver.store import get_store
from co2logserver.store.columns import Columns
from co2logserver.store.schema import forwarder_status, outbox
from co2logserver.web.dashboard import sparkline_points
from tests.conftest import (
    SensorActions,
    observations,
    uploads_from_before_the_counters,
)

EXACT = {"latitude": 48.521234, "longitude": 9.057891, "elevation": 321.7}
#: A bucket-aligned start (a multiple of one day) for the aggregation tests.
T0 = 1_700_006_400
NOW = int(time.time())


@pytest.fixture
def site(any_db_app):
    """A client with a secure sensor (PM10, TEMP), a silent rogue and legacy rows."""
    app = any_db_app()
    client = app.test_client()
    actions = SensorActions(client)
    suid, rogue = actions.new_suid(), actions.new_suid()
    secret = actions.register(suid, {"model": "AQ-1", "location": EXACT})
    body = observations(*range(NOW - 3000, NOW, 600))
    assert actions.post(suid, body, secret).status_code == 200
    stale = observations(NOW - 7200, HUM=50.0)
    assert actions.post_rogue(rogue, stale).status_code == 200
    client.post("/upload", json={"time": [NOW - 60, NOW], "co2": [410, 415]})
    return {
        "app": app,
        "client": client,
        "suid": suid,
        "rogue": rogue,
        "secret": secret,
    }


def text(client, url: str) -> str:
    """The page at ``url``, which must answer 200."""
    response = client.get(url)
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def cell(page: str, element_id: str) -> str:
    """Text of the element with ``element_id``."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert match, element_id
    return match[1].strip()


# --- pages --------------------------------------------------------------------------


def test_dashboard_counts(site):
    page = text(site["client"], "/")
    assert cell(page, "row-count") == "2"
    assert cell(page, "uploads-hour") == "2"
    assert cell(page, "sensor-count") == "2"
    assert cell(page, "sensors-active") == "1"
    assert cell(page, "sensors-silent") == "1"
    assert cell(page, "reading-count") == "11"  # 5 x (PM10, TEMP) + 1 HUM
    assert cell(page, "backlog") == "0"
    for link in ('href="/sensors"', 'href="/download', 'href="/v1/sensors"'):
        assert link in page


def test_dashboard_silent_after_is_configurable(any_db_app):
    client = any_db_app(SILENT_AFTER=3 * 3600).test_client()
    SensorActions(client).post_rogue(
        SensorActions.new_suid(), observations(NOW - 7200, HUM=50.0)
    )
    page = text(client, "/")
    assert (cell(page, "sensors-active"), cell(page, "sensors-silent")) == ("1", "0")


def test_dashboard_of_an_empty_server(client):
    page = text(client, "/")
    assert cell(page, "row-count") == "0"
    assert cell(page, "uploads-day") == "0"
    assert cell(page, "sensor-count") == "0"
    assert cell(page, "latest-upload") == "none yet"
    assert "No sensor has registered" in text(client, "/sensors")


def test_dashboard_shows_forwarder_backlog_and_error_without_password(any_db_app):
    app = any_db_app(OSEM_PASSWORD="hunter2-very-secret")
    with get_store(app).transaction() as conn:
        conn.execute(
            insert(outbox).values(
                kind="legacy", box="b", payload="{}", created_at=NOW, attempts=1
            )
        )
        conn.execute(
            insert(forwarder_status).values(
                name="opensensemap",
                last_error_at=NOW - 5,
                last_error="login failed for hunter2-very-secret: 401",
            )
        )
    page = text(app.test_client(), "/")
    assert cell(page, "backlog") == "1"
    assert "login failed for ***: 401" in page
    assert "hunter2" not in page


def test_uploads_in_the_last_hour_and_day(any_db_app):
    """Rows of a data table from before the counters, then an upload through /upload.

    (More in ``test_lists.py``.)
    """
    app = any_db_app()
    store = get_store(app)
    now = datetime.datetime.now(datetime.UTC)
    uploads_from_before_the_counters(store, now)
    counts = dashboard_sql.upload_counts(store, now)
    assert (counts["rows"], counts["uploads_hour"], counts["uploads_day"]) == (3, 1, 2)
    client = app.test_client()
    assert client.post("/upload", json={"co2": [1]}).status_code == 200
    page = text(client, "/")
    assert (cell(page, "uploads-hour"), cell(page, "uploads-day")) == ("2", "3")
    assert cell(page, "row-count") == "4"


def test_sensor_list(site):
    page = text(site["client"], "/sensors")
    assert site["suid"] in page and site["rogue"] in page
    assert "48.52, 9.06" in page
    assert 'class="silent"' in page and 'class="active"' in page
    assert page.count("<polyline") == 1  # the rogue sensor has one value: no line
    assert "PM10 12.5" in page  # the sparkline prefers PM10 over TEMP


@pytest.mark.parametrize(
    ("sort", "order", "first"),
    [
        ("last_reading", "desc", "suid"),
        ("last_reading", "asc", "rogue"),
        ("reading_count", "asc", "rogue"),
        ("secure", "desc", "suid"),
        ("location", "asc", "suid"),  # sensors without a location come last
        ("location", "desc", "suid"),
    ],
)
def test_sensor_list_sorts(site, sort, order, first):
    page = text(site["client"], f"/sensors?sort={sort}&order={order}")
    rows = re.findall(r'data-suid="([^"]+)"', page)
    assert rows[0] == site[first]


def test_sensor_list_refuses_unknown_sort(client):
    response = client.get("/sensors?sort=secret")
    assert response.status_code == 400
    assert "sort must be one of" in response.get_json()["error"]


def test_pages_never_show_exact_locations_or_secrets(site):
    client, suid = site["client"], site["suid"]
    for url in ("/", "/sensors", f"/sensors/{suid}", f"/sensors/{suid}?range=30d"):
        page = text(client, url)
        assert site["secret"] not in page
        for exact in ("48.521", "9.057", "9.058", "321.7"):
            assert exact not in page, (url, exact)
    assert "48.52, 9.06, 322 m" in text(client, f"/sensors/{suid}")


def test_sensor_page_embeds_the_buckets_and_tables(site):
    page = text(site["client"], f"/sensors/{site['suid']}")
    embedded = re.search(
        r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S
    )
    data = json.loads(embedded[1])
    assert data["interval"] == 120  # 24 h in at most 720 buckets
    assert {b["type"] for b in data["buckets"]} == {"PM10", "TEMP"}
    assert len(data["buckets"]) == 10
    assert page.count('class="buckets"') == 2  # one table per type, without JS
    assert "vendor/uplot/uPlot.iife.min.js" in page
    assert "format=csv" in page and "aggregate=120" in page


def test_sensor_page_custom_and_empty_ranges(site):
    client, suid = site["client"], site["suid"]
    page = text(client, f"/sensors/{suid}?range=custom&from=2001-01-01&to=2001-01-02")
    assert 'id="no-data"' in page
    assert "2001-01-01 00:00 UTC to 2001-01-02 00:00 UTC" in page
    assert "Show the day up to the last reading" in page
    page = text(client, f"/sensors/{suid}?range=custom&from={NOW - 1300}&to={NOW}")
    assert page.count('class="chart"') == 2


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("range=1y", 400),
        ("range=custom&from=yesterday", 400),
        ("range=custom&from=1700000100&to=1700000000", 400),
        ("range=custom&to=99999999999999999999", 400),
        ("range=custom&from=-99999999999&to=0", 400),
        ("range=custom&from=1&to=253402300800", 400),
    ],
)
def test_sensor_page_refuses_bad_ranges(site, query, status):
    response = site["client"].get(f"/sensors/{site['suid']}?{query}")
    assert response.status_code == status


def test_sensor_page_of_unknown_or_malformed_sensor(client):
    assert client.get(f"/sensors/{SensorActions.new_suid()}").status_code == 404
    assert client.get("/sensors/not-a-uuid").status_code == 400


def test_data_page_names_the_chart_columns(site):
    page = text(site["client"], "/download?format=html")
    assert 'id="data-chart"' in page
    assert 'data-numeric-columns="[&#34;co2&#34;]"' in page
    assert 'data-time-columns="[&#34;time&#34;, &#34;time_upload_utc&#34;]"' in page
    page = text(site["client"], "/download?format=html&cols=matched_checksums")
    assert 'id="data-chart"' not in page and "uPlot" not in page


# --- pure helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "interval"),
    [
        (3600, 60),
        (86400, 120),
        (7 * 86400, 900),
        (30 * 86400, 3600),
        (365 * 86400, 86400),
        (50 * 365 * 86400, 604800),
    ],
)
def test_pick_interval(span, interval):
    assert dashboard_data.pick_interval(span) == interval


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, ("24h", T0 - 86400, T0)),
        ({"range": "7d"}, ("7d", T0 - 7 * 86400, T0)),
        ({"range": "30d", "from": "1"}, ("30d", T0 - 30 * 86400, T0)),
        (
            {"range": "custom", "from": "2023-11-14T00:00", "to": "2023-11-15"},
            ("custom", 1699920000, 1700006400),
        ),
        ({"range": "custom", "to": str(T0)}, ("custom", T0 - 86400, T0)),
        ({"range": "custom", "from": str(T0 - 600)}, ("custom", T0 - 600, T0)),
    ],
)
def test_time_range(args, expected):
    span = dashboard_data.time_range(args, now=T0)
    assert (span.name, span.start, span.end) == expected


@pytest.mark.parametrize(
    ("values", "points"),
    [
        ([], ""),
        ([5.0], ""),
        ([1.0, 2.0], "0.0,22.0 120.0,2.0"),
        ([3.0, 3.0, 3.0], "0.0,22.0 60.0,22.0 120.0,22.0"),
    ],
)
def test_sparkline_points(values, points):
    assert sparkline_points(values) == points


def columns(**kinds: str) -> Columns:
    """Reflected columns of the given kinds."""
    return Columns({name.lower(): (name, kind) for name, kind in kinds.items()})


SETTINGS = {"CO2LOGSERVER_TIME_COLS": ["time"], "CO2LOGSERVER_UPLOAD_TIME_COL": "up"}


@pytest.mark.parametrize(
    ("header", "kinds", "expected"),
    [
        (
            ["up", "time", "co2", "box"],
            {"up": "datetime", "time": "datetime", "co2": "int", "box": "text"},
            (["time", "up"], ["co2"]),
        ),
        (["co2", "temp"], {"co2": "int", "temp": "float"}, ([], [])),
        (
            ["Time", "Temp"],
            {"Time": "datetime", "Temp": "float"},
            (["Time"], ["Temp"]),
        ),
        (["up", "x"], {"up": "datetime", "x": "any"}, (["up"], [])),
        (  # 0.1.2's database: its time_utc, lat and lon are numbers, not measured
            ["up", "co2", "time_utc", "temperature_c", "time", "lon", "lat"],
            {
                "up": "datetime",
                "co2": "int",
                "time_utc": "int",
                "temperature_c": "float",
                "time": "datetime",
                "lon": "float",
                "lat": "float",
            },
            (["time", "up"], ["co2", "temperature_c"]),
        ),
        (
            ["up", "id", "box_id", "height", "Latitude", "timestamp", "pm10", "hum"],
            {
                "up": "datetime",
                "id": "int",
                "box_id": "int",
                "height": "float",
                "Latitude": "float",
                "timestamp": "int",
                "pm10": "float",
                "hum": "int",
            },
            (["up"], ["pm10", "hum"]),
        ),
    ],
)
def test_chart_columns(header, kinds, expected):
    chart = dashboard_data.chart_columns(header, columns(**kinds), SETTINGS)
    assert (chart["time_columns"], chart["numeric_columns"]) == expected


# --- GET /v1/sensors/<SUID>/readings?aggregate= -------------------------------------


@pytest.fixture
def bucketed(any_db_app):
    """A sensor with readings at chosen offsets from T0, on SQLite and PostgreSQL."""
    client = any_db_app(MAX_CLOCK_SKEW=10**9).test_client()
    actions = SensorActions(client)
    suid = actions.new_suid()
    secret = actions.register(suid)
    body = json.dumps(
        [
            {"timestamp": T0, "readings": {"PM10": 1.0, "TEMP": 20.0}},
            {"timestamp": T0 + 59, "readings": {"PM10": 3.0}},
            {"timestamp": T0 + 60, "readings": {"PM10": 10.0}},
            {"timestamp": T0 + 119, "readings": {"PM10": 20.0}},
            {"timestamp": T0 + 3600, "readings": {"PM10": 7.5}},
        ]
    ).encode()
    assert actions.post(suid, body, secret).status_code == 200
    client.secret = secret  # the device's SECRET, for a signed re-registration
    return client, suid


def aggregate(client, suid: str, query: str) -> dict:
    """The aggregation API's answer, which must be 200."""
    response = client.get(f"/v1/sensors/{suid}/readings?{query}")
    assert response.status_code == 200, response.data
    return response.get_json()


def bucket_tuples(data: dict) -> list[tuple]:
    """Buckets as ``(type, start, count, min, mean, max)``."""
    return [
        (b["type"], b["start"] - T0, b["count"], b["min"], b["mean"], b["max"])
        for b in data["buckets"]
    ]


def test_aggregate_minute_buckets(bucketed):
    client, suid = bucketed
    data = aggregate(client, suid, "aggregate=60&type=PM10")
    assert (data["suid"], data["interval"]) == (suid, 60)
    # A bucket holds [start, start + interval); empty buckets are left out.
    assert bucket_tuples(data) == [
        ("PM10", 0, 2, 1.0, 2.0, 3.0),
        ("PM10", 60, 2, 10.0, 15.0, 20.0),
        ("PM10", 3600, 1, 7.5, 7.5, 7.5),
    ]
    assert {b["unit"] for b in data["buckets"]} == {"µg/m³"}


def test_aggregate_per_type_and_long_intervals(bucketed):
    client, suid = bucketed
    data = aggregate(client, suid, "aggregate=1h")
    assert bucket_tuples(data) == [
        ("PM10", 0, 4, 1.0, 8.5, 20.0),
        ("PM10", 3600, 1, 7.5, 7.5, 7.5),
        ("TEMP", 0, 1, 20.0, 20.0, 20.0),
    ]
    assert aggregate(client, suid, "aggregate=1d")["interval"] == 86400
    day = bucket_tuples(aggregate(client, suid, "aggregate=1d&type=PM10"))
    assert day == [("PM10", 0, 5, 1.0, 8.3, 20.0)]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        # ``from`` is inclusive and ``to`` exclusive, at bucket edges too.
        (f"from={T0 + 60}&to={T0 + 120}", [("PM10", 60, 2, 10.0, 15.0, 20.0)]),
        (f"from={T0}&to={T0 + 60}", [("PM10", 0, 2, 1.0, 2.0, 3.0)]),
        (f"from={T0}&to={T0 + 59}", [("PM10", 0, 1, 1.0, 1.0, 1.0)]),
        # A range that starts inside a bucket keeps the bucket's start.
        (
            f"from={T0 + 59}&to={T0 + 61}",
            [("PM10", 0, 1, 3.0, 3.0, 3.0), ("PM10", 60, 1, 10.0, 10.0, 10.0)],
        ),
        (f"from={T0 + 59}&to={T0 + 60}", [("PM10", 0, 1, 3.0, 3.0, 3.0)]),
        (f"from={T0 + 120}&to={T0 + 3600}", []),
        (f"from={T0 + 3601}", []),
        (f"to={T0}", []),
        ("from=2001-01-01&to=2001-01-02", []),
    ],
)
def test_aggregate_ranges_and_bucket_edges(bucketed, bounds, expected):
    client, suid = bucketed
    data = aggregate(client, suid, f"aggregate=60&type=PM10&{bounds}")
    assert bucket_tuples(data) == expected


def test_aggregate_of_a_sensor_without_readings(any_db_app):
    client = any_db_app().test_client()
    actions = SensorActions(client)
    suid = actions.new_suid()
    actions.register(suid)
    assert aggregate(client, suid, "aggregate=60")["buckets"] == []


def test_aggregate_spans_registrations_and_filters_verified(bucketed):
    client, suid = bucketed
    actions = SensorActions(client)
    secret = actions.register(suid, secret=client.secret)  # a new registration
    later = json.dumps([{"timestamp": T0 + 30, "readings": {"PM10": 5.0}}]).encode()
    assert actions.post(suid, later, secret).status_code == 200
    first = bucket_tuples(aggregate(client, suid, "aggregate=60&type=PM10"))[0]
    assert first == ("PM10", 0, 3, 1.0, 3.0, 5.0)
    assert aggregate(client, suid, "aggregate=60&verified=false")["buckets"] == []


@pytest.mark.parametrize("interval", ["0", "abc", "5x", "-60", "1.5h"])
def test_aggregate_refuses_bad_intervals(bucketed, interval):
    client, suid = bucketed
    response = client.get(f"/v1/sensors/{suid}/readings?aggregate={interval}")
    assert response.status_code == 400
    assert "aggregate" in response.get_json()["error"]


def test_aggregate_of_unknown_sensor_is_404(client):
    suid = SensorActions.new_suid()
    assert client.get(f"/v1/sensors/{suid}/readings?aggregate=60").status_code == 404


def test_pages_show_a_protocol_device_s_alias_and_protocol(client):
    """SPEC §9: the native device id is kept as the alias and shown on the pages."""
    from co2logserver.devices import suid_for

    push = {
        "esp8266id": "7654321",
        "sensordatavalues": [{"value_type": "SDS_P1", "value": "3.40"}],
    }
    headers = {"X-Sensor": "esp8266-7654321"}
    assert (
        client.post("/airrohr/v1/push", json=push, headers=headers).status_code == 200
    )
    listing = client.get("/sensors").get_data(as_text=True)
    assert "airrohr:esp8266-7654321:SDS" in listing
    assert '<small class="protocol">airrohr</small>' in listing
    page = client.get(f"/sensors/{suid_for('airrohr:esp8266-7654321:SDS')}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<dd class="protocol">airrohr</dd>' in text
    assert "<code>airrohr:esp8266-7654321:SDS</code>" in text

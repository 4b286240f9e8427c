"""Reading the sensor API back: sensor lists, reading pages with a cursor, CSV,
and location privacy in every public response (SPEC §6, issue 3)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid

import pytest

from tests.conftest import SensorActions, observations

NOW = int(time.time())
T0 = NOW - 86400
EXACT = {"latitude": 52.123456789, "longitude": -13.987654321, "elevation": 34.56789}
ADMIN = {"Authorization": "Bearer admin-token"}


def encode(document) -> bytes:
    """JSON bytes as a sensor would send them."""
    return json.dumps(document).encode()


def get_json(client, path: str, status: int = 200, **kw):
    """GET ``path`` and return its JSON, checking the status."""
    response = client.get(path, **kw)
    assert response.status_code == status, response.data
    return response.get_json()


@pytest.fixture
def readback(any_db_app):
    """A client and sensor actions on SQLite and PostgreSQL, with an admin token."""
    client = any_db_app(ADMIN_TOKENS=["admin-token"]).test_client()
    return SensorActions(client)


def fill(api: SensorActions, suid: str, secret: str | None, count: int) -> None:
    """Store ``count`` observations of PM10 and TEMP, one a minute from T0."""
    body = encode(
        [
            {"timestamp": T0 + 60 * i, "readings": {"PM10": float(i), "TEMP": 20.0}}
            for i in range(count)
        ]
    )
    response = api.post(suid, body, secret) if secret else api.post_rogue(suid, body)
    assert response.status_code == 200, response.data


# --------------------------------------------------------------------------------------
# Sensors
# --------------------------------------------------------------------------------------


def test_sensor_list_shows_what_an_operator_needs(readback):
    api = readback
    secure, rogue, silent = sorted(api.new_suid() for _ in range(3))
    secret = api.register(secure, {"manufacturer": "ACME INC", "model": "X9000"})
    fill(api, secure, secret, 3)
    fill(api, rogue, None, 2)
    api.register(silent, {"location": EXACT})

    body = get_json(api.client, "/v1/sensors")
    assert list(body) == ["sensors"]
    views = {view["suid"]: view for view in body["sensors"]}
    assert list(views) == [secure, rogue, silent] or set(views) == {
        secure,
        rogue,
        silent,
    }
    assert views[secure] | {"registered_at": None} == {
        "suid": secure,
        "alias": None,  # SPEC §9: null for OpenSmog sensors
        "protocol": "opensmog",
        "manufacturer": "ACME INC",
        "model": "X9000",
        "location": None,
        "secure": True,
        "registered_at": None,
        "first_reading": T0,
        "last_reading": T0 + 120,
        "reading_count": 6,
    }
    assert views[rogue]["secure"] is False
    assert views[rogue]["manufacturer"] is None
    assert (views[rogue]["first_reading"], views[rogue]["reading_count"]) == (T0, 4)
    assert views[silent]["reading_count"] == 0
    assert views[silent]["first_reading"] is None
    assert views[silent]["last_reading"] is None
    for suid, view in views.items():
        assert get_json(api.client, f"/v1/sensors/{suid}") == view


def test_no_sensors_is_an_empty_list(readback):
    assert get_json(readback.client, "/v1/sensors") == {"sensors": []}


def test_unknown_sensor_is_404(readback):
    suid = readback.new_suid()
    for path in (f"/v1/sensors/{suid}", f"/v1/sensors/{suid}/readings"):
        response = readback.client.get(path)
        assert response.status_code == 404
        assert suid in response.get_json()["error"]
    response = readback.client.get(f"/v1/sensors/{suid}/readings?format=csv")
    assert response.status_code == 404


# --------------------------------------------------------------------------------------
# Readings
# --------------------------------------------------------------------------------------


def readings(client, suid: str, **params) -> dict:
    """One JSON page of readings."""
    return get_json(client, f"/v1/sensors/{suid}/readings", query_string=params)


def keys(page: dict) -> list[tuple]:
    """(timestamp, type) of each reading on a page."""
    return [(r["timestamp"], r["type"]) for r in page["readings"]]


def test_reading_fields_and_order(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, api.register(suid), 2)
    page = readings(api.client, suid)
    assert page == {
        "suid": suid,
        "readings": [
            {
                "timestamp": T0,
                "type": "PM10",
                "value": 0.0,
                "unit": "µg/m³",
                "verified": True,
            },
            {
                "timestamp": T0,
                "type": "TEMP",
                "value": 20.0,
                "unit": "°C",
                "verified": True,
            },
            {
                "timestamp": T0 + 60,
                "type": "PM10",
                "value": 1.0,
                "unit": "µg/m³",
                "verified": True,
            },
            {
                "timestamp": T0 + 60,
                "type": "TEMP",
                "value": 20.0,
                "unit": "°C",
                "verified": True,
            },
        ],
        "next": None,
    }


def test_units_of_every_type(readback):
    api = readback
    suid = api.new_suid()
    units = {
        "CO": "mg/m³",
        "PB": "µg/m³",
        "NO2": "µg/m³",
        "O3": "µg/m³",
        "PM10": "µg/m³",
        "PM2_5": "µg/m³",
        "SO2": "µg/m³",
        "TEMP": "°C",
        "HUM": "%",
        "PRES": "hPa",
    }
    body = encode([{"timestamp": T0, "readings": dict.fromkeys(units, 1.5)}])
    assert api.post_rogue(suid, body).status_code == 200
    page = readings(api.client, suid)
    assert {r["type"]: r["unit"] for r in page["readings"]} == units


#: Quantities of the registry beyond the ten OpenSmog types (SPEC §9), with units.
REGISTRY_UNITS = {
    "CO2": "ppm",
    "PM1": "µg/m³",
    "PM4": "µg/m³",
    "NOISE_LAEQ": "dB(A)",
    "NOISE_LA_MIN": "dB(A)",
    "NOISE_LA_MAX": "dB(A)",
    "SIGNAL": "dBm",
}


def test_registry_quantities_are_stored_read_back_and_charted(readback):
    """A signed CO2/PM1/noise reading on /v1 is kept with its unit everywhere."""
    api = readback
    suid = api.new_suid()
    secret = api.register(suid)
    values = {name: 400.0 + i for i, name in enumerate(REGISTRY_UNITS)}
    body = encode([{"timestamp": T0, "readings": values}])
    assert api.post(suid, body, secret).status_code == 200
    page = readings(api.client, suid)
    assert {r["type"]: (r["value"], r["unit"]) for r in page["readings"]} == {
        name: (values[name], unit) for name, unit in REGISTRY_UNITS.items()
    }
    assert all(r["verified"] for r in page["readings"])
    rows = list(
        csv.reader(
            io.StringIO(
                api.client.get(
                    f"/v1/sensors/{suid}/readings?format=csv&type=CO2,NOISE_LAEQ"
                ).get_data(as_text=True)
            )
        )
    )
    assert rows[1:] == [
        [str(T0), "CO2", "400.0", "ppm", "True"],
        [str(T0), "NOISE_LAEQ", "403.0", "dB(A)", "True"],
    ]
    buckets = get_json(
        api.client,
        f"/v1/sensors/{suid}/readings",
        query_string={"aggregate": "1h", "type": "PM1"},
    )["buckets"]
    assert [(b["type"], b["unit"], b["count"]) for b in buckets] == [
        ("PM1", "µg/m³", 1)
    ]
    chart = api.client.get(f"/sensors/{suid}?range=custom&from={T0 - 60}&to={T0 + 60}")
    assert chart.status_code == 200
    assert "CO2" in chart.get_data(as_text=True)
    assert "dB(A)" in chart.get_data(as_text=True)


def test_time_range_filters(readback):
    """``from`` is inclusive and ``to`` exclusive; UNIX seconds or ISO 8601."""
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 5)
    by_seconds = readings(api.client, suid, **{"from": T0 + 60, "to": T0 + 180})
    assert keys(by_seconds) == [
        (T0 + 60, "PM10"),
        (T0 + 60, "TEMP"),
        (T0 + 120, "PM10"),
        (T0 + 120, "TEMP"),
    ]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 60))
    iso_to = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(T0 + 180))
    assert readings(api.client, suid, **{"from": iso, "to": iso_to}) == by_seconds
    assert keys(readings(api.client, suid, **{"from": T0 + 240})) == [
        (T0 + 240, "PM10"),
        (T0 + 240, "TEMP"),
    ]
    assert len(readings(api.client, suid, to=T0 + 60)["readings"]) == 2
    assert readings(api.client, suid, **{"from": NOW})["readings"] == []


def test_type_and_verified_filters(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 2)  # rogue first
    secret = api.register(suid)
    api.post(suid, observations(T0 + 600, PM10=5.0, HUM=40.0), secret)

    assert keys(readings(api.client, suid, type="PM10")) == [
        (T0, "PM10"),
        (T0 + 60, "PM10"),
        (T0 + 600, "PM10"),
    ]
    assert keys(readings(api.client, suid, type="hum,temp")) == [
        (T0, "TEMP"),
        (T0 + 60, "TEMP"),
        (T0 + 600, "HUM"),
    ]
    assert keys(readings(api.client, suid, verified="true")) == [
        (T0 + 600, "PM10"),
        (T0 + 600, "HUM"),
    ]
    unverified = readings(api.client, suid, verified="false")
    assert len(unverified["readings"]) == 4
    assert {r["verified"] for r in unverified["readings"]} == {False}
    assert len(readings(api.client, suid)["readings"]) == 6


def test_cursor_pages_through_everything_once(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 4)  # 8 readings under the rogue registration
    secret = api.register(suid)
    fill(api, suid, secret, 3)  # and 6 under the secure one (same times)
    everything = readings(api.client, suid)
    assert everything["next"] is None
    assert len(everything["readings"]) == 14

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = readings(api.client, suid, **params)
        pages += 1
        assert len(page["readings"]) <= 3
        seen += page["readings"]
        cursor = page["next"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 5
    assert seen == everything["readings"]


def test_cursor_keeps_the_filters(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 6)
    first = readings(api.client, suid, type="PM10", limit=4, **{"from": T0 + 60})
    assert keys(first) == [(T0 + 60 * i, "PM10") for i in range(1, 5)]
    rest = readings(
        api.client,
        suid,
        type="PM10",
        limit=4,
        cursor=first["next"],
        **{"from": T0 + 60},
    )
    assert keys(rest) == [(T0 + 300, "PM10")]
    assert rest["next"] is None


def test_page_size_default_and_cap(any_db_app):
    api = SensorActions(
        any_db_app(READINGS_PAGE_SIZE=3, READINGS_MAX_PAGE_SIZE=5).test_client()
    )
    suid = api.new_suid()
    fill(api, suid, None, 4)
    assert len(readings(api.client, suid)["readings"]) == 3
    assert len(readings(api.client, suid, limit=100)["readings"]) == 5
    assert len(readings(api.client, suid, limit=8)["readings"]) == 5
    assert readings(api.client, suid, limit=8)["next"] is not None


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"limit": "many"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"format": "xml"}, "format"),
        ({"type": "RADON"}, "type"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2024-13-45"}, "to"),
        ({"verified": "maybe"}, "verified"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "1-2"}, "cursor"),
        ({"aggregate": "often"}, "aggregate"),
        ({"aggregate": "0"}, "aggregate"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(readback, params, names):
    suid = readback.new_suid()
    fill(readback, suid, None, 1)
    response = readback.client.get(f"/v1/sensors/{suid}/readings", query_string=params)
    assert response.status_code == 400
    assert names in response.get_json()["error"]


def test_csv_is_a_streamed_download_of_the_same_readings(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 2)
    secret = api.register(suid)
    fill(api, suid, secret, 1)

    response = api.client.get(f"/v1/sensors/{suid}/readings?format=csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert suid in disposition
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["timestamp", "type", "value", "unit", "verified"]
    page = readings(api.client, suid)["readings"]
    assert rows[1:] == [
        [
            str(r["timestamp"]),
            r["type"],
            repr(r["value"]),
            r["unit"],
            str(r["verified"]),
        ]
        for r in page
    ]
    assert len(rows) == 7


def test_csv_takes_the_filters_and_ignores_the_page_size(any_db_app):
    api = SensorActions(any_db_app(READINGS_PAGE_SIZE=2).test_client())
    suid = api.new_suid()
    fill(api, suid, None, 5)
    response = api.client.get(
        f"/v1/sensors/{suid}/readings",
        query_string={"format": "csv", "type": "PM10", "from": T0 + 60},
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert [(int(r[0]), r[1]) for r in rows[1:]] == [
        (T0 + 60 * i, "PM10") for i in range(1, 5)
    ]


def test_aggregate_buckets(readback):
    api = readback
    suid = api.new_suid()
    fill(api, suid, None, 5)  # PM10 0..4, one a minute
    body = readings(api.client, suid, aggregate="1h", type="PM10")
    assert body["interval"] == 3600
    total = sum(bucket["count"] for bucket in body["buckets"])
    assert total == 5
    assert min(b["min"] for b in body["buckets"]) == 0.0
    assert max(b["max"] for b in body["buckets"]) == 4.0
    assert {b["type"] for b in body["buckets"]} == {"PM10"}


# --------------------------------------------------------------------------------------
# Location privacy and SECRETs in every response
# --------------------------------------------------------------------------------------


def too_precise(text: str, decimals: int) -> list[str]:
    """Numbers in ``text`` near EXACT's coordinates with more than ``decimals`` places.

    The elevation counts too: public responses give it in whole metres.
    """
    found = []
    for token in re.findall(r"\d+\.\d+", text):
        places = len(token.partition(".")[2].rstrip("0"))
        value = float(token)
        near = [abs(abs(EXACT[key]) - value) < 1 for key in ("latitude", "longitude")]
        if any(near) and places > decimals:
            found.append(token)
        if abs(EXACT["elevation"] - value) < 1 and places > 0:
            found.append(token)
    return found


def public_paths(app, suid: str) -> list[str]:
    """Every GET route of the app that needs at most a SUID, filled in."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if set(rule.arguments) - {"suid"}:
            continue
        paths.append(rule.rule.replace("<suid>", suid))
    return paths


def variants(path: str) -> list[str]:
    """A path and the format variants a client might ask for."""
    return [path, f"{path}?format=csv", f"{path}?format=json"]


@pytest.mark.parametrize("decimals", [0, 2, 4])
def test_every_public_response_rounds_the_location(make_app, decimals):
    app = make_app(PUBLIC_LOCATION_DECIMALS=decimals, ADMIN_TOKENS=["admin-token"])
    api = SensorActions(app.test_client())
    suid = api.new_suid()
    secret = api.register(suid, {"model": "X9000", "location": EXACT})
    fill(api, suid, secret, 2)

    paths = public_paths(app, suid)
    assert {f"/v1/sensors/{suid}", "/v1/sensors"} <= set(paths)
    for path in paths:
        for url in variants(path):
            text = api.client.get(url).get_data(as_text=True)
            assert not too_precise(text, decimals), url
            assert secret not in text, url

    expected = {
        "latitude": round(EXACT["latitude"], decimals),
        "longitude": round(EXACT["longitude"], decimals),
        "elevation": round(EXACT["elevation"]),
    }
    assert get_json(api.client, f"/v1/sensors/{suid}")["location"] == expected
    listed = get_json(api.client, "/v1/sensors")["sensors"]
    assert [view["location"] for view in listed] == [expected]


def test_admin_token_sees_the_exact_location(any_db_app):
    app = any_db_app(ADMIN_TOKENS=["admin-token", "other-token"])
    api = SensorActions(app.test_client())
    suid = api.new_suid()
    secret = api.register(suid, {"location": EXACT, "firmware": "1.0"})

    for headers in (ADMIN, {"Authorization": "bearer other-token"}):
        view = get_json(api.client, f"/v1/sensors/{suid}", headers=headers)
        assert view["location"] == EXACT
        assert view["metadata"] == {"firmware": "1.0"}
        listed = get_json(api.client, "/v1/sensors", headers=headers)["sensors"]
        assert listed[0]["location"] == EXACT
        assert secret not in json.dumps(view) + json.dumps(listed)

    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "admin-token"},
        {"Authorization": f"OpenSmogHash {secret}"},
    ):
        view = get_json(api.client, f"/v1/sensors/{suid}", headers=headers)
        assert view["location"] == {
            "latitude": 52.12,
            "longitude": -13.99,
            "elevation": 35,
        }
        assert "metadata" not in view


def test_no_admin_tokens_means_no_exact_location(make_app):
    api = SensorActions(make_app().test_client())
    suid = api.new_suid()
    api.register(suid, {"location": EXACT})
    for token in ("", "None", "[]"):
        view = get_json(
            api.client,
            f"/v1/sensors/{suid}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert view["location"]["latitude"] == 52.12


def test_secret_appears_only_in_the_registration_reply(make_app):
    app = make_app(ADMIN_TOKENS=["admin-token"])
    api = SensorActions(app.test_client())
    suid = api.new_suid()
    secret = api.register(suid, {"location": EXACT})
    fill(api, suid, secret, 1)

    def seen(response) -> str:
        """Body and headers of a response, read at once (CSV is streamed)."""
        return response.get_data(as_text=True) + str(response.headers)

    texts = [
        seen(api.client.put(f"/v1/sensors/{suid}", json={"model": 5})),
        seen(api.post(suid, observations(T0 + 999), secret)),
        seen(api.post(suid, observations(T0 + 999), "0" * 64)),
        seen(api.post(suid, observations(T0 + 999))),
        seen(api.post_rogue(suid, observations(T0 + 999))),
    ]
    for path in public_paths(app, suid):
        for url in variants(path):
            texts.append(seen(api.client.get(url)))
            texts.append(seen(api.client.get(url, headers=ADMIN)))
    for text in texts:
        assert secret not in text and secret.upper() not in text


@pytest.mark.parametrize(
    "query",
    [
        "from=99999999999999999999",
        "to=-99999999999999999999",
        "aggregate=99999999999999999999d",
        "cursor=1-99999999999999999999999-1",
    ],
)
def test_out_of_range_numbers_are_400(sensors, query):
    suid = sensors.new_suid()
    sensors.post_rogue(suid, observations(1600000000))
    response = sensors.client.get(f"/v1/sensors/{suid}/readings?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_a_cursor_page_is_a_range_scan_of_the_primary_key(any_db_app):
    """Issue 18: a page costs the same at any depth — its query seeks the key."""
    from co2logserver.store import get_store
    from co2logserver.store import history as history_sql
    from co2logserver.store.selection import ReadingSelection

    app = any_db_app()
    client = app.test_client()
    suid = str(uuid.uuid4())
    body = json.dumps(
        [
            {"timestamp": T0 + n, "readings": {"PM10": 1.0, "TEMP": 2.0}}
            for n in range(500)
        ]
    )
    assert (
        client.post(f"/rogue/v1/sensors/{suid}/readings", data=body).status_code == 200
    )
    store = get_store(app)
    statement = history_sql.registration_readings(
        1, ReadingSelection(suid), (T0 + 400, 5), 100
    )
    with store.reading() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            )
            assert (
                "USING PRIMARY KEY (registration_id=? AND (ts,type)>(?,?))" in plan
            ), plan
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
            assert "readings_pkey" in plan and "ROW(ts, type) > ROW(" in plan, plan
    # and the pages themselves walk the whole history in order, once
    seen, cursor = [], ""
    while True:
        page = client.get(f"/v1/sensors/{suid}/readings?limit=170{cursor}").json
        seen += [(r["timestamp"], r["type"]) for r in page["readings"]]
        if not page["next"]:
            break
        cursor = "&cursor=" + page["next"]
    assert len(seen) == 1000 and seen == sorted(
        seen, key=lambda k: (k[0], k[1] != "PM10")
    )

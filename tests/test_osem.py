"""OpenSenseMap forwarding: the real sensemapi client against the local stand-in.

Nothing of sensemapi is mocked: every test goes over real HTTP to
:class:`tests.osem_standin.OsemStandin` on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from co2logserver.forwarding.account import OsemAccount, make_account
from co2logserver.forwarding.client import OsemClient
from co2logserver.forwarding.errors import (
    OsemNoLocation,
    OsemRefused,
    OsemRetryable,
    redact,
)

if TYPE_CHECKING:
    from tests.osem_standin import OsemStandin

pytest_plugins = ["tests.osem_standin"]  # the osem_standin fixture

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now(monkeypatch) -> None:
    """Measurement times follow the clock: a box made now must not be newer."""
    monkeypatch.setattr(
        sys.modules[__name__], "NOW", dt.datetime.now(UTC).replace(microsecond=0)
    )


ICONS = [
    "osem-moisture",
    "osem-temperature-celsius",
    "osem-thermometer",
    "osem-barometer",
    "osem-humidity",
    "osem-not-available",
    "osem-cloud",
    "osem-particulate-matter",
]


def icon_for(details: dict[str, str]) -> str:
    """0.1.2's icon rule: the first icon containing the quantity."""
    return next((i for i in ICONS if details["quantity"] in i), "osem-not-available")


def settings_0_1_2(standin: OsemStandin, **overrides: Any) -> dict[str, Any]:
    """The OpenSenseMap keys of co2logserver 0.1.2 with its defaults, caches off."""
    settings = {
        "CO2LOGSERVER_NAME": "co2logserver",
        "CO2LOGSERVER_SENSEMAPI_LOGLEVEL": logging.WARNING,
        "CO2LOGSERVER_UPLOAD_TIME_COL": "time_upload_utc",
        "CO2LOGSERVER_MATCHED_CHECKSUMS_COL": "matched_checksums",
        "CO2LOGSERVER_FAILED_CHECKSUMS_COL": "failed_checksums",
        "CO2LOGSERVER_TIME_COLS": ["time"],
        "CO2LOGSERVER_OSEM_UPLOAD": True,
        "CO2LOGSERVER_OSEM_API": standin.url,
        "CO2LOGSERVER_OSEM_EMAIL": standin.email,
        "CO2LOGSERVER_OSEM_USERNAME": None,
        "CO2LOGSERVER_OSEM_PASSWORD": standin.password,
        "CO2LOGSERVER_OSEM_AUTH_CACHE": False,
        "CO2LOGSERVER_OSEM_REQUEST_CACHE": False,
        "CO2LOGSERVER_OSEM_CACHE_PASSWORD": False,
        "CO2LOGSERVER_OSEM_COL_REDIRECT": lambda col: True,
        "CO2LOGSERVER_OSEM_BOX_REDIRECT": lambda box: True,
        "CO2LOGSERVER_OSEM_VALUE_FILTER": lambda box, col, val: round(val, 3),
        "CO2LOGSERVER_OSEM_BOX_COL": "box",
        "CO2LOGSERVER_OSEM_BOX_COL_DEFAULT": "generic",
        "CO2LOGSERVER_OSEM_LAT_COL": "lat",
        "CO2LOGSERVER_OSEM_LON_COL": "lon",
        "CO2LOGSERVER_OSEM_HEIGHT_COL": "height",
        "CO2LOGSERVER_DEFAULT_LAT": lambda box: None,
        "CO2LOGSERVER_DEFAULT_LON": lambda box: None,
        "CO2LOGSERVER_OSEM_TIME_COL": "time",
        "CO2LOGSERVER_OSEM_MIN_SECONDS_BETWEEN_UPLOADS": 0,
        "CO2LOGSERVER_OSEM_EXPOSURE_DETERMINER": lambda box: next(
            (x for x in ("indoor", "outdoor", "mobile") if box in x), "mobile"
        ),
        "CO2LOGSERVER_OSEM_DEFAULT_WEBLINK": "https://example.org/co2logserver",
        "CO2LOGSERVER_OSEM_DEFAULT_DESCRIPTION": "Made by '{servername}'.",
        "CO2LOGSERVER_OSEM_COL_REGEX": re.compile(
            r"^(?P<type>[^_]+)_(?P<quantity>[^_]+)_(?P<unit>.*)$"
        ),
        "CO2LOGSERVER_OSEM_BOX_NAME_GENERATOR": "{servername} senseBox {box}".format,
        "CO2LOGSERVER_OSEM_SENSOR_TITLE_GENERATOR": "{quantity}".format,
        "CO2LOGSERVER_OSEM_UNIT_COVERTER": lambda x: {
            "c": "°C",
            "percent": "%",
            "perc": "%",
        }.get(x.lower(), x),
        "CO2LOGSERVER_OSEM_ICON_DETERMINER": icon_for,
        "CO2LOGSERVER_OSEM_MAX_POSITION_CHANGE": float("inf"),
        "CO2LOGSERVER_OSEM_TIMEOUT": 5,
    }
    settings.update({f"CO2LOGSERVER_{k}": v for k, v in overrides.items()})
    return settings


def forwarder_for(standin: OsemStandin, **overrides: Any) -> OsemClient:
    """A forwarder with a fresh account talking to the stand-in."""
    settings = settings_0_1_2(standin, **overrides)
    return OsemClient(make_account(settings), settings)


def row(box: str | None, minutes: int, **columns: Any) -> dict[str, Any]:
    """A stored legacy row measured ``minutes`` after NOW at a place near Tübingen."""
    data = {
        "time": NOW + dt.timedelta(minutes=minutes),
        "time_upload_utc": NOW,
        "lat": 48.52,
        "lon": 9.05,
        "height": 320.0,
        "matched_checksums": "",
        **columns,
    }
    if box is not None:
        data["box"] = box
    return data


def sensors_of(standin: OsemStandin, name: str) -> dict[str, dict[str, Any]]:
    """The sensors of the stand-in box ``name`` by title."""
    box = standin.box_by_name(name)
    assert box is not None, f"no box {name!r} in {list(standin.boxes)}"
    return {s["title"]: s for s in box["sensors"]}


def measurements_of(standin: OsemStandin, name: str) -> list[dict[str, Any]]:
    """The measurements the stand-in received for box ``name``."""
    return [m for m in standin.measurements if m["box_name"] == name]


# ----------------------------------------------------------------------- legacy


def test_legacy_rows_create_box_with_sensors_and_post_once(
    osem_standin: OsemStandin,
) -> None:
    """New box: right name, texts, sensors, units, icons; one data post per box."""
    rows = [
        row("outdoor", 0, scd30_co2_ppm=412.3456, bme280_temperature_c=21.5),
        row("outdoor", 1, scd30_co2_ppm="415.1", bme280_humidity_percent=40),
        row("indoor", 0, scd30_co2_ppm=800, comment="window open"),
        row("outdoor", 2, scd30_co2_ppm="n/a", bme280_temperature_c=None),
    ]
    rows[1]["time"] = (NOW + dt.timedelta(minutes=1)).isoformat(sep=" ")
    rows[2]["time"] = NOW.timestamp()

    forwarder_for(osem_standin).forward_legacy(rows)

    outdoor = osem_standin.box_by_name("co2logserver senseBox outdoor")
    indoor = osem_standin.box_by_name("co2logserver senseBox indoor")
    assert outdoor and indoor and len(osem_standin.boxes) == 2
    assert outdoor["exposure"] == "outdoor" and indoor["exposure"] == "indoor"
    assert outdoor["grouptag"] == "co2logserver"
    assert outdoor["description"] == "Made by 'co2logserver'."
    assert outdoor["weblink"] == "https://example.org/co2logserver"
    sensors = sensors_of(osem_standin, outdoor["name"])
    assert {
        t: (s["unit"], s["sensorType"], s.get("icon")) for t, s in sensors.items()
    } == {
        "co2": ("ppm", "scd30", "osem-not-available"),
        "temperature": ("°C", "bme280", "osem-temperature-celsius"),
        "humidity": ("%", "bme280", "osem-humidity"),
    }
    assert osem_standin.data_posts(outdoor["_id"]) == 1
    assert osem_standin.data_posts(indoor["_id"]) == 1

    received = {
        (sensor_title(osem_standin, m), m["createdAt"]): m
        for m in measurements_of(osem_standin, outdoor["name"])
    }
    first, second = osem_time(NOW), osem_time(NOW + dt.timedelta(minutes=1))
    assert {k: m["value"] for k, m in received.items()} == {
        ("co2", first): 412.346,
        ("temperature", first): 21.5,
        ("co2", second): 415.1,
        ("humidity", second): 40.0,
    }
    location = {"lat": 48.52, "lng": 9.05, "height": 320.0}
    assert all(m["location"] == location for m in received.values())
    [indoor_value] = measurements_of(osem_standin, indoor["name"])
    assert (indoor_value["value"], indoor_value["createdAt"]) == (800.0, first)


def osem_time(moment: dt.datetime) -> str:
    """The stand-in's time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def sensor_title(standin: OsemStandin, measurement: dict[str, Any]) -> str:
    """Title of the sensor a received measurement belongs to."""
    box = standin.boxes[measurement["box_id"]]
    return next(
        s["title"] for s in box["sensors"] if s["_id"] == measurement["sensor_id"]
    )


def test_second_forward_reuses_box_and_adds_new_sensor(
    osem_standin: OsemStandin,
) -> None:
    """The box list is read once; a new column becomes one more sensor."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row(None, 0, scd30_co2_ppm=410)])
    forwarder.forward_legacy([row(None, 1, scd30_co2_ppm=411, sht31_rh_perc=55)])

    name = "co2logserver senseBox generic"
    assert [b["name"] for b in osem_standin.boxes.values()] == [name]
    assert set(sensors_of(osem_standin, name)) == {"co2", "rh"}
    assert sensors_of(osem_standin, name)["rh"]["unit"] == "%"
    assert osem_standin.count("POST", "/boxes") == 1
    assert osem_standin.count("PUT", "/boxes/[0-9a-f]+") == 2  # texts, new sensor
    assert osem_standin.count("GET", "/users/me/boxes") == 2  # start, after create
    assert len(measurements_of(osem_standin, name)) == 3


def test_existing_box_found_by_a_new_forwarder(osem_standin: OsemStandin) -> None:
    """Boxes made earlier (on any page of the box list) are reused, not re-made."""
    osem_standin.page_size = 2
    first = forwarder_for(osem_standin)
    first.forward_legacy([row(f"b{i}", 0, scd30_co2_ppm=400 + i) for i in range(5)])
    assert len(osem_standin.boxes) == 5

    forwarder_for(osem_standin).forward_legacy([row("b4", 1, scd30_co2_ppm=499)])

    assert len(osem_standin.boxes) == 5
    assert len(measurements_of(osem_standin, "co2logserver senseBox b4")) == 2


def test_forwarding_the_same_rows_twice_posts_them_once(
    osem_standin: OsemStandin,
) -> None:
    """A batch retried after a partial failure does not duplicate measurements."""
    forwarder = forwarder_for(osem_standin)
    rows = [row("a", 0, scd30_co2_ppm=400), row("a", 1, scd30_co2_ppm=401)]
    forwarder.forward_legacy(rows)
    forwarder.forward_legacy(rows)
    assert len(osem_standin.measurements) == 2


def test_redirect_hooks_and_non_matching_columns(osem_standin: OsemStandin) -> None:
    """BOX_REDIRECT/COL_REDIRECT skip data; columns not matching the regex too."""
    forwarder = forwarder_for(
        osem_standin,
        OSEM_BOX_REDIRECT=lambda box: box != "secret",
        OSEM_COL_REDIRECT=lambda col: not col.startswith("debug"),
    )
    forwarder.forward_legacy(
        [
            row("secret", 0, scd30_co2_ppm=1),
            row("open", 0, scd30_co2_ppm=2, debug_loop_ms=5, battery=3.7),
        ]
    )
    assert [b["name"] for b in osem_standin.boxes.values()] == [
        "co2logserver senseBox open"
    ]
    assert set(sensors_of(osem_standin, "co2logserver senseBox open")) == {"co2"}


def test_min_seconds_between_uploads(osem_standin: OsemStandin) -> None:
    """A value closer than the minimum to the previous one of its sensor is skipped."""
    forwarder = forwarder_for(osem_standin, OSEM_MIN_SECONDS_BETWEEN_UPLOADS=300)
    forwarder.forward_legacy([row("a", m, scd30_co2_ppm=m) for m in (0, 1, 6)])
    forwarder.forward_legacy([row("a", 8, scd30_co2_ppm=8)])
    forwarder.forward_legacy([row("a", 12, scd30_co2_ppm=12)])
    assert [m["value"] for m in osem_standin.measurements] == [0.0, 6.0, 12.0]


def test_max_position_change(osem_standin: OsemStandin) -> None:
    """A jump beyond the limit is posted without location; the box stays put."""
    forwarder = forwarder_for(osem_standin, OSEM_MAX_POSITION_CHANGE=0.5)
    forwarder.forward_legacy([row("car", 0, gps_speed_kmh=10)])
    forwarder.forward_legacy(
        [
            row("car", 1, gps_speed_kmh=11, lat=48.6, lon=9.1),
            row("car", 2, gps_speed_kmh=12, lat=10.0, lon=10.0),
        ]
    )
    locations = [m["location"] for m in osem_standin.measurements]
    assert locations[1] == {"lat": 48.6, "lng": 9.1, "height": 320.0}
    assert locations[2] is None
    box = osem_standin.box_by_name("co2logserver senseBox car")
    assert box["currentLocation"]["coordinates"][:2] == [9.1, 48.6]


def test_default_location_hooks_place_a_new_box(osem_standin: OsemStandin) -> None:
    """Rows without lat/lon use CO2LOGSERVER_DEFAULT_LAT/_LON for a new box."""
    forwarder = forwarder_for(
        osem_standin, DEFAULT_LAT=lambda box: 47.0, DEFAULT_LON=lambda box: 8.0
    )
    forwarder.forward_legacy([row("lab", 0, scd30_co2_ppm=420, lat=None, lon=None)])
    box = osem_standin.box_by_name("co2logserver senseBox lab")
    assert box["currentLocation"]["coordinates"] == [8.0, 47.0]
    assert osem_standin.measurements[0]["location"] is None


def test_new_box_without_location_waits(osem_standin: OsemStandin) -> None:
    """No position for a new box: OsemNoLocation, nothing created; others go on."""
    forwarder = forwarder_for(osem_standin)
    rows = [
        row("nowhere", 0, scd30_co2_ppm=420, lat=None, lon=None),
        row("somewhere", 0, scd30_co2_ppm=421),
    ]
    with pytest.raises(OsemNoLocation, match="nowhere"):
        forwarder.forward_legacy(rows)
    assert [b["name"] for b in osem_standin.boxes.values()] == [
        "co2logserver senseBox somewhere"
    ]


def test_box_deleted_on_osem_is_created_again(osem_standin: OsemStandin) -> None:
    """A 404 for a cached box reloads the list and re-creates the box."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    osem_standin.boxes.clear()
    forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401)])
    assert len(osem_standin.boxes) == 1
    assert [m["value"] for m in osem_standin.measurements] == [400.0, 401.0]


# --------------------------------------------------------------------- OpenSmog


def test_opensmog_readings_one_box_per_suid(osem_standin: OsemStandin) -> None:
    """One box per SUID, one sensor per reading type with unit and icon."""
    forwarder = forwarder_for(osem_standin)
    stamp = int(NOW.timestamp())
    values = {
        "CO": 0.4,
        "PB": 0.01,
        "NO2": 20,
        "O3": 50,
        "PM10": 12,
        "PM2_5": 8,
        "SO2": 3,
        "TEMP": 21.5,
        "HUM": 45,
        "PRES": 1013.2,
    }
    observations = [(stamp, values), (stamp + 60, {"PM2_5": 9.5, "TEMP": 21.7})]
    forwarder.forward_readings("SUID0001", (48.52, 9.05, None), observations)
    forwarder.forward_readings("SUID0002", (52.5, 13.4, 40.0), [(stamp, {"CO": 1})])

    name = "co2logserver OpenSmog SUID0001"
    sensors = sensors_of(osem_standin, name)
    assert {t: (s["unit"], s["icon"]) for t, s in sensors.items()} == {
        "CO": ("mg/m³", "osem-cloud"),
        "Pb": ("µg/m³", "osem-cloud"),
        "NO2": ("µg/m³", "osem-cloud"),
        "O3": ("µg/m³", "osem-cloud"),
        "PM10": ("µg/m³", "osem-particulate-matter"),
        "PM2.5": ("µg/m³", "osem-particulate-matter"),
        "SO2": ("µg/m³", "osem-cloud"),
        "Temperature": ("°C", "osem-thermometer"),
        "Humidity": ("%", "osem-humidity"),
        "Pressure": ("hPa", "osem-barometer"),
    }
    box = osem_standin.box_by_name(name)
    assert box["currentLocation"]["coordinates"] == [9.05, 48.52]
    assert osem_standin.data_posts(box["_id"]) == 1
    received = measurements_of(osem_standin, name)
    assert len(received) == 12
    assert {m["location"]["lat"] for m in received} == {48.52}
    assert Counter(sensor_title(osem_standin, m) for m in received)["PM2.5"] == 2
    other = osem_standin.box_by_name("co2logserver OpenSmog SUID0002")
    assert other["currentLocation"]["coordinates"] == [13.4, 52.5, 40.0]
    assert len(osem_standin.boxes) == 2


def test_opensmog_without_location_waits(osem_standin: OsemStandin) -> None:
    """No location: OsemNoLocation before any request."""
    forwarder = forwarder_for(osem_standin)
    with pytest.raises(OsemNoLocation):
        forwarder.forward_readings("SUID0001", None, [(0, {"CO": 1.0})])
    assert osem_standin.calls == []


# ---------------------------------------------------------------------- failures


def test_standin_down_is_retryable(osem_standin: OsemStandin) -> None:
    """Connection refused: OsemRetryable; once back, forwarding works."""
    forwarder = forwarder_for(osem_standin)
    osem_standin.down = True
    with pytest.raises(OsemRetryable, match="not reachable"):
        forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    osem_standin.down = False
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    assert len(osem_standin.measurements) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_retryable(
    osem_standin: OsemStandin, status: int
) -> None:
    """5xx and 429: OsemRetryable at once (sensemapi's 429 sleep is bypassed)."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    osem_standin.fail_status = status
    started = time.monotonic()
    with pytest.raises(OsemRetryable) as caught:
        forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401)])
    assert caught.value.status == status
    assert time.monotonic() - started < 2
    assert osem_standin.count("POST", "/users/sign-in") == 1
    osem_standin.fail_status = None
    forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401)])
    assert len(osem_standin.measurements) == 2


def test_outage_stops_the_batch_at_once(osem_standin: OsemStandin) -> None:
    """While OSEM fails, the remaining boxes of a batch are not tried."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, a_b_c=1), row("b", 0, a_b_c=2)])
    osem_standin.fail_status = 503
    osem_standin.calls.clear()
    with pytest.raises(OsemRetryable):
        forwarder.forward_legacy([row("a", 1, a_b_c=3), row("b", 1, a_b_c=4)])
    assert osem_standin.count("POST", "/boxes/[0-9a-f]+/data") == 1


def test_failure_during_box_creation_is_retryable(osem_standin: OsemStandin) -> None:
    """Even the first requests (sign-in, box list) map to OsemRetryable."""
    osem_standin.fail_status = 503
    with pytest.raises(OsemRetryable):
        forwarder_for(osem_standin).forward_legacy([row("a", 0, scd30_co2_ppm=1)])


def test_refused_box_is_refused_with_reason(osem_standin: OsemStandin) -> None:
    """A 4xx for one box: OsemRefused with OSEM's reason; other boxes are posted."""
    osem_standin.refuse_box_names.add("co2logserver senseBox bad")
    forwarder = forwarder_for(osem_standin)
    rows = [row("bad", 0, scd30_co2_ppm=1), row("good", 0, scd30_co2_ppm=2)]
    with pytest.raises(OsemRefused, match="stand-in refuses measurements") as caught:
        forwarder.forward_legacy(rows)
    assert caught.value.status == 422
    assert [m["box_name"] for m in osem_standin.measurements] == [
        "co2logserver senseBox good"
    ]


#: OSEM calls about the account or its boxes, not about the measurements (#12).
ACCOUNT_CALLS = {
    "box-list": (("GET", "/users/me/boxes"), "listing the account's boxes"),
    "add-sensors": (("PUT", "/boxes/[0-9a-f]+"), "adding sensors to box"),
}


@pytest.mark.parametrize("status", [400, 404, 422])
@pytest.mark.parametrize("call", ACCOUNT_CALLS)
def test_refused_account_call_is_retryable(
    osem_standin: OsemStandin, call: str, status: int
) -> None:
    """A 4xx that is no verdict on the data: OsemRetryable naming the call."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    route, words = ACCOUNT_CALLS[call]
    osem_standin.fail_routes[route] = status
    forwarder.forget_boxes()
    with pytest.raises(OsemRetryable) as caught:
        forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401, sht31_rh_perc=50)])
    assert caught.value.status == status
    assert words in caught.value.message
    assert "stand-in refuses" in caught.value.message
    osem_standin.fail_routes.clear()
    forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401, sht31_rh_perc=50)])
    assert [m["value"] for m in osem_standin.measurements] == [400.0, 401.0, 50.0]


@pytest.mark.parametrize(
    "route", [("POST", "/boxes"), ("POST", "/boxes/[0-9a-f]+/data")]
)
def test_refused_data_or_its_new_box_is_refused(
    osem_standin: OsemStandin, route: tuple[str, str]
) -> None:
    """A 4xx to the measurements (or to creating their box) is for good."""
    osem_standin.fail_routes[route] = 422
    with pytest.raises(OsemRefused) as caught:
        forwarder_for(osem_standin).forward_legacy([row("a", 0, scd30_co2_ppm=1)])
    assert caught.value.status == 422


def test_waiting_wins_over_refused(osem_standin: OsemStandin) -> None:
    """With one box refused and one unplaceable, the caller is told to wait."""
    osem_standin.refuse_box_names.add("co2logserver senseBox bad")
    forwarder = forwarder_for(osem_standin)
    rows = [row("bad", 0, a_b_c=1), row("lost", 0, a_b_c=2, lat=None)]
    with pytest.raises(OsemNoLocation):
        forwarder.forward_legacy(rows)


def test_wrong_password_is_retryable(osem_standin: OsemStandin) -> None:
    """A refused sign-in is a configuration problem: keep the data, retry later."""
    forwarder = forwarder_for(osem_standin, OSEM_PASSWORD="wrong-password")
    with pytest.raises(OsemRetryable, match="sign-in failed"):
        forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])


@pytest.mark.parametrize("refresh_too", [False, True])
def test_expired_tokens_are_renewed(
    osem_standin: OsemStandin, refresh_too: bool
) -> None:
    """An expired JWT is refreshed, or with the refresh token gone, signed in anew."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    osem_standin.expire_tokens(refresh_too=refresh_too)
    forwarder.forget_boxes()  # the box list needs the JWT too
    forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401, sht31_rh_perc=50)])
    assert set(sensors_of(osem_standin, "co2logserver senseBox a")) == {"co2", "rh"}
    assert osem_standin.count("POST", "/users/refresh-auth") == 1
    assert osem_standin.count("POST", "/users/sign-in") == 1 + refresh_too


def test_new_box_access_token_after_401(osem_standin: OsemStandin) -> None:
    """A 401 (changed box access token) signs in again, reloads and posts."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    osem_standin.rotate_access_token(next(iter(osem_standin.boxes)))
    forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401)])
    assert len(osem_standin.measurements) == 2
    assert osem_standin.count("POST", "/users/sign-in") == 2


def test_persistent_401_is_retryable(osem_standin: OsemStandin) -> None:
    """A 401 that survives signing in again: OsemRetryable, not a refusal."""
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    box = next(iter(osem_standin.boxes.values()))
    osem_standin.rotate_access_token(box["_id"])
    forwarder.account.box_authorization = lambda token: _wrong_token(forwarder)
    with pytest.raises(OsemRetryable) as caught:
        forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401)])
    assert caught.value.status == 401


def _wrong_token(forwarder: OsemClient):
    """Context manager sending a wrong box token (the stand-in then answers 401)."""
    return OsemAccount.box_authorization(forwarder.account, "not-the-token")


# ------------------------------------------------------------ account and hygiene


def test_make_account_reads_settings(osem_standin: OsemStandin) -> None:
    """API, login and timeouts come from the settings; no cache by default."""
    account = make_account(settings_0_1_2(osem_standin, OSEM_TIMEOUT=7))
    assert isinstance(account, OsemAccount)
    assert account.api == osem_standin.url
    assert account.email == osem_standin.email
    assert account.connection_timeout == account.response_timeout == 7.0
    assert account.auth_cache is None and account.request_cache is None
    assert osem_standin.password not in repr(account)


def test_default_api_is_the_live_one(osem_standin: OsemStandin) -> None:
    """``CO2LOGSERVER_OSEM_API = None`` keeps sensemapi's default."""
    account = make_account(settings_0_1_2(osem_standin, OSEM_API=None))
    assert account.api == "https://api.opensensemap.org/"
    account.token = None  # never signed in: nothing to sign out at the live API


def test_nothing_written_to_home(
    osem_standin: OsemStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default settings sensemapi writes no cache into home directories."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    forwarder = forwarder_for(osem_standin)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    forwarder.forward_readings("S1", (1.0, 2.0, None), [(0, {"CO": 1})])
    assert list(home.rglob("*")) == []


def test_request_cache_without_cachecontrol_degrades(
    osem_standin: OsemStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """Asking for a request cache without CacheControl only logs a warning."""
    if importlib.util.find_spec("cachecontrol") is not None:
        pytest.skip("CacheControl is installed here")
    with caplog.at_level(logging.WARNING, logger="co2logserver.forwarding.account"):
        account = make_account(settings_0_1_2(osem_standin, OSEM_REQUEST_CACHE=True))
    assert account.request_cache is None
    assert "CacheControl" in caplog.text


def test_auth_cache_in_given_folder(osem_standin: OsemStandin, tmp_path: Path) -> None:
    """A folder as CO2LOGSERVER_OSEM_AUTH_CACHE keeps the sign-in there."""
    settings = settings_0_1_2(osem_standin, OSEM_AUTH_CACHE=str(tmp_path))
    forwarder = OsemClient(make_account(settings), settings)
    forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
    assert [p.name for p in tmp_path.iterdir()] == ["co2logserver-osem-auth.sqlite"]
    stored = (tmp_path / "co2logserver-osem-auth.sqlite").read_bytes()
    assert osem_standin.password.encode() not in stored


def test_no_secret_in_logs(
    osem_standin: OsemStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at DEBUG, neither the password nor any token reaches the logs."""
    with caplog.at_level(logging.DEBUG):
        forwarder = forwarder_for(osem_standin, SENSEMAPI_LOGLEVEL=logging.DEBUG)
        forwarder.forward_legacy([row("a", 0, scd30_co2_ppm=400)])
        osem_standin.expire_tokens()
        forwarder.forward_legacy([row("a", 1, scd30_co2_ppm=401, x_y_z=1)])
        forwarder.account.sign_out()
    assert "token" in caplog.text.lower()  # sensemapi did log its payloads
    assert osem_standin.password not in caplog.text
    assert osem_standin.issued_secrets
    leaked = [s for s in osem_standin.issued_secrets if s in caplog.text]
    assert leaked == []


def test_redact() -> None:
    """Token values in JSON, Python reprs and Bearer headers are masked."""
    text = (
        '{"token":"abc","refreshToken": "def"} '
        "{'access_token': 'ghi', 'Authorization': 'Bearer jkl'} Bearer mno"
    )
    cleaned = redact(text)
    assert not any(s in cleaned for s in ("abc", "def", "ghi", "jkl", "mno"))


def test_forwarder_needs_our_account(osem_standin: OsemStandin) -> None:
    """A plain SenseMapAccount lacks the fixes: refused with a clear message."""
    from sensemapi.account import SenseMapAccount

    with pytest.raises(TypeError, match="make_account"):
        OsemClient(SenseMapAccount(api=osem_standin.url), {})

"""The forwarding planner on its own: what goes to which senseBox, no network.

Settings come from ``config_default.py`` as they are: the planner has no
fallbacks of its own (#14), so these tables pin that the defaults it applies are
the configuration's.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from co2logserver import config_default
from co2logserver.forwarding import plans
from co2logserver.store import outbox

UTC = dt.UTC


def defaults(**overrides: Any) -> dict[str, Any]:
    """Every key of config_default.py, with ``CO2LOGSERVER_<key>`` overrides."""
    settings = {
        key: getattr(config_default, key)
        for key in dir(config_default)
        if key.startswith("CO2LOGSERVER_")
    }
    settings.update({f"CO2LOGSERVER_{k}": v for k, v in overrides.items()})
    return settings


def row(box: Any, **values: Any) -> dict[str, Any]:
    return {
        "box": box,
        "time": "2026-01-02T03:04:05",
        "lat": 48.5,
        "lon": 9.0,
        **values,
    }


def only(found: list[plans.BoxPlan]) -> plans.BoxPlan:
    (plan,) = found
    return plan


@pytest.mark.parametrize(
    ("column", "raw", "title", "unit", "icon", "value"),
    [
        # The default unit converter and icon rule of config_default.py apply.
        (
            "sht31_temperature_c",
            21.23456,
            "temperature",
            "°C",
            "osem-temperature-celsius",
            21.235,
        ),
        ("sht31_humidity_perc", "55", "humidity", "%", "osem-humidity", 55.0),
        ("scd30_co2_ppm", 410.0004, "co2", "ppm", "osem-not-available", 410.0),
    ],
)
def test_legacy_columns_follow_the_configured_defaults(
    column, raw, title, unit, icon, value
):
    plan = only(plans.legacy_plans([row("indoor", **{column: raw})], defaults()))
    (reading,) = plan.readings
    assert reading.spec == plans.SensorSpec(title, column.split("_")[0], unit, icon)
    assert reading.value == value  # the default value filter rounds to 3 places
    assert reading.time == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert reading.location == (48.5, 9.0, None)


@pytest.mark.parametrize(
    ("box", "exposure"), [("indoor", "indoor"), ("out", "outdoor"), ("car", "mobile")]
)
def test_exposure_comes_from_the_configured_determiner(box, exposure):
    plan = only(plans.legacy_plans([row(box, a_b_c=1)], defaults()))
    assert plan.exposure == exposure
    assert plan.name == f"co2logserver senseBox {box}"
    assert plan.grouptag == "co2logserver"
    assert "co2logserver" in plan.description


def test_rows_are_grouped_by_the_outbox_rule():
    """A row's box is what store.outbox keyed it by: empty and missing are default."""
    rows = [row("a", a_b_c=1), row("", a_b_c=2), row(None, a_b_c=3), row(0, a_b_c=4)]
    settings = defaults()
    names = [p.name.rpartition(" ")[2] for p in plans.legacy_plans(rows, settings)]
    stored = outbox.legacy_items(rows, "box", "generic")
    assert names == list(dict.fromkeys(box for box, _ in stored))
    assert names == ["a", "generic", "0"]


def test_a_box_not_forwarded_has_no_plan():
    settings = defaults(OSEM_BOX_REDIRECT=lambda box: box != "secret")
    found = plans.legacy_plans([row("secret", a_b_c=1), row("a", a_b_c=2)], settings)
    assert [p.name for p in found] == ["co2logserver senseBox a"]


def test_a_missing_setting_is_an_error_not_a_default():
    settings = defaults()
    del settings["CO2LOGSERVER_OSEM_EXPOSURE_DETERMINER"]
    with pytest.raises(KeyError, match="OSEM_EXPOSURE_DETERMINER"):
        plans.legacy_plans([row("a", a_b_c=1)], settings)


def sensor(lat: float | None, lon: float | None, elevation: float | None = None):
    return SimpleNamespace(latitude=lat, longitude=lon, elevation=elevation)


@pytest.mark.parametrize(
    ("stored", "hidden", "hooks", "home"),
    [
        # The public location: rounded to CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS.
        (sensor(48.521234, 9.057891, 312.4), False, None, (48.52, 9.06, 312)),
        # The owner hid it: only the hooks may place the box.
        (sensor(48.521234, 9.057891), True, None, None),
        (sensor(48.521234, 9.057891), True, (1.5, 2.5), (1.5, 2.5, None)),
        # No position stored, no sensor row: the hooks, else none.
        (sensor(None, None), False, (1.5, 2.5), (1.5, 2.5, None)),
        (None, False, None, None),
        (sensor(48.521234, 9.057891), False, (1.5, 2.5), (48.52, 9.06, None)),
    ],
)
def test_where_an_opensmog_box_is(stored, hidden, hooks, home):
    lat, lon = hooks or (None, None)
    settings = defaults(DEFAULT_LAT=lambda suid: lat, DEFAULT_LON=lambda suid: lon)
    assert plans.sensor_home("SUID0001", stored, hidden, settings) == home


def test_readings_without_a_home_wait():
    plan = plans.readings_plan("SUID0001", None, [(0, {"CO2": 410})], defaults())
    assert plan.home is None and plan.home_required
    assert plan.name == "co2logserver OpenSmog SUID0001"
    (reading,) = plan.readings
    assert reading.spec == plans.SensorSpec("CO2", "OpenSmog", "ppm", "osem-co2")


def test_learned_quantities_go_with_an_unknown_unit():
    home = (48.52, 9.06, None)
    plan = plans.readings_plan(
        "S", home, [(0, {"pm2.5": 3, "uv_index": 4, "x": "nan"})], defaults()
    )
    specs = [(r.spec.title, r.spec.unit) for r in plan.readings]
    assert specs == [("PM2.5", "µg/m³"), ("uv_index", "-")]

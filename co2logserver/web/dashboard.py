"""Blueprint ``dashboard``: the sensor list and one page of charts per sensor.

Pages render their data as tables and links first, so they work without
JavaScript; the charts (uPlot, vendored in ``static/vendor/uplot``) draw on top.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from flask import Blueprint, render_template, request

from co2logserver import auth, dashboard_data, readback
from co2logserver.web.common import settings, store

bp = Blueprint("dashboard", __name__)

SPARK_WIDTH = 120
SPARK_HEIGHT = 24
DURATION_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


@bp.app_template_filter("utc")
def format_utc(seconds: float | None) -> str:
    """UNIX seconds as ``2026-11-22 05:10 UTC`` (pages show UTC only)."""
    if seconds is None:
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("moment")
def format_moment(value) -> str:
    """A stored upload time (datetime, or ISO text on SQLite) to the second."""
    if isinstance(value, datetime.datetime):
        value = value.astimezone(datetime.UTC).isoformat(sep=" ")
    return str(value)[:19] if value else ""


@bp.app_template_filter("isoutc")
def format_iso(seconds: float) -> str:
    """UNIX seconds as a ``datetime-local`` input value (UTC, minutes)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M"
    )


@bp.app_template_filter("duration")
def format_duration(seconds: float) -> str:
    """A length of time in its largest whole unit: ``3600`` is ``1 h``."""
    seconds = int(seconds)
    for unit, size in DURATION_UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def sparkline_points(values: Sequence[float]) -> str:
    """SVG polyline points of ``values``, scaled into the sparkline's box."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    spread = (high - low) or 1.0
    step = SPARK_WIDTH / (len(values) - 1)
    scale = (SPARK_HEIGHT - 4) / spread
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 2 - (v - low) * scale:.1f}"
        for i, v in enumerate(values)
    )


@bp.get("/sensors")
def sensor_list():
    """A page of the sensors: public location, secure or rogue, last reading,
    sparkline; ``page`` and ``q`` (SUID prefix, alias or model) choose which."""
    sort = request.args.get("sort", "last_reading")
    descending = request.args.get("order", "desc") != "asc"
    search = request.args.get("q", "").strip() or None
    page = dashboard_data.parse_page(request.args.get("page"))
    listing = dashboard_data.sensor_list(
        store(), settings(), sort, descending, page, search
    )
    for view in listing["sensors"]:
        view["spark_points"] = sparkline_points(view["spark"])
    return render_template(
        "sensors.html",
        listing=listing,
        sensors=listing["sensors"],
        sort=sort,
        order="desc" if descending else "asc",
        descending=descending,
        search=search,
        silent_after=settings()["CO2LOGSERVER_SILENT_AFTER"],
    )


@bp.get("/sensors/<suid>")
def sensor_page(suid: str):
    """Charts of one sensor over a time range, one per reading type.

    :raise 400: for a malformed SUID or time range.
    :raise 404: for a sensor that never registered nor posted.
    """
    suid = auth.parse_suid(suid)
    sensor = readback.get_sensor_view(store(), suid, decimals(), exact=False)
    span = dashboard_data.time_range(request.args)
    data = dashboard_data.chart_data(store(), suid, span)
    return render_template(
        "sensor.html",
        sensor=sensor,
        name=dashboard_data.display_name(store(), suid),
        span=span,
        data=data,
        groups=dashboard_data.bucket_table(data),
        intervals=dashboard_data.INTERVALS,
        max_points=dashboard_data.MAX_POINTS,
    )


def decimals() -> int:
    """Public location precision."""
    return settings()["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]

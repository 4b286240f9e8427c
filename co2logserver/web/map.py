"""Blueprint ``map``: every sensor with a public location on one map (§12)."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

from co2logserver import dashboard_data
from co2logserver.readings import QUANTITIES
from co2logserver.web.common import settings, store

bp = Blueprint("map", __name__)


@bp.get("/map")
def sensor_map():
    """Markers at rounded positions, coloured by the latest map quantity."""
    markers = dashboard_data.map_markers(store(), settings())
    for marker in markers:
        marker["url"] = url_for("dashboard.sensor_page", suid=marker["suid"])
    return render_template(
        "map.html",
        markers=markers,
        quantity=QUANTITIES[settings()["CO2LOGSERVER_MAP_QUANTITY"]],
        tiles=settings()["CO2LOGSERVER_MAP_TILE_URL"],
        attribution=settings()["CO2LOGSERVER_MAP_TILE_ATTRIBUTION"],
    )

"""Blueprint ``sensors``: the OpenSmog sensor API (``/v1`` and ``/rogue/v1``)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, request, stream_with_context

from co2logserver import applier, auth, limits, metrics, readback, registration
from co2logserver.web import export
from co2logserver.web.common import (
    request_bodies,
    require_json_readings,
    settings,
    store,
)

bp = Blueprint("sensors", __name__)


@bp.after_request
def tell_the_time(response: Response) -> Response:
    """Every answer carries the server's clock, so a device without one can set it."""
    response.headers["X-OpenSmog-Time"] = str(int(time.time()))
    return response


def is_admin() -> bool:
    """Whether the request bears one of ``CO2LOGSERVER_ADMIN_TOKENS``."""
    return auth.bearer_token_allowed(
        request.headers.get("Authorization"), settings()["CO2LOGSERVER_ADMIN_TOKENS"]
    )


def decimals() -> int:
    """Public location precision."""
    return settings()["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]


@bp.put("/v1/sensors/<suid>")
@limits.per_sensor
def register(suid: str):
    """Register a sensor; the reply is its new SECRET, shown this once."""
    raw, body = request_bodies(body_required=False)
    secret = registration.register_sensor(
        store(),
        settings(),
        suid,
        body,
        request.headers.get("Authorization"),
        raw_body=raw,
    )
    return Response(
        secret, mimetype="text/plain", headers={"Cache-Control": "no-store"}
    )


def post_readings(suid: str, rogue_route: bool) -> Response:
    """Store readings through the authorization table of the OpenSmog API."""
    require_json_readings()
    raw, body = request_bodies()
    new = applier.submit(
        store(),
        settings(),
        "readings",
        suid=suid,
        body=body,
        authorization=request.headers.get("Authorization"),
        rogue_route=rogue_route,
        raw_body=raw,
    )
    metrics.count_readings(new)
    stored = Response(b"", status=200)
    del stored.headers["Content-Type"]  # an empty body is no HTML page
    return stored


@bp.post("/v1/sensors/<suid>/readings")
@limits.per_sensor
def readings(suid: str):
    """Verified readings (or rogue ones from a SUID not registered via PUT)."""
    return post_readings(suid, rogue_route=False)


@bp.post("/rogue/v1/sensors/<suid>/readings")
@limits.per_sensor
def rogue_readings(suid: str):
    """Unverified readings; a secure SUID gets 403 here."""
    return post_readings(suid, rogue_route=True)


@bp.get("/v1/sensors")
def list_sensors():
    """Sensors with their public location, paged by ``limit`` and ``cursor``;
    ``?alias=`` finds protocol devices."""
    return readback.sensors_page(
        store(), decimals(), is_admin(), request.args, settings()
    )


@bp.get("/v1/sensors/<suid>")
def show_sensor(suid: str):
    """One sensor with its public location."""
    return readback.get_sensor_view(store(), suid, decimals(), is_admin())


@bp.get("/v1/sensors/<suid>/readings")
def list_readings(suid: str):
    """Readings as JSON pages or a streamed CSV; ``aggregate`` gives buckets."""
    query = readback.parse_readings_query(suid, request.args, settings())
    if query.aggregate:
        buckets = readback.aggregate(store(), query)
        if query.format == "json":
            return buckets
        cells = (tuple(b[k] for k in AGGREGATE_HEADER) for b in buckets["buckets"])
        return csv_download(AGGREGATE_HEADER, cells, f"{query.suid}-aggregate.csv")
    if query.format == "json":
        return readback.readings_page(store(), query)
    rows = readback.readings_rows(store(), query)
    header = ("timestamp", "type", "value", "unit", "verified")
    return csv_download(header, rows, f"{query.suid}-readings.csv")


#: Columns of an aggregate as CSV, in the order of its JSON buckets.
AGGREGATE_HEADER = ("type", "unit", "start", "count", "min", "mean", "max")


def csv_download(header, rows, filename: str) -> Response:
    """Stream ``rows`` as a CSV attachment."""
    return Response(
        stream_with_context(export.stream_csv(header, rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

"""Blueprint ``pages``: the dashboard (index page), the health check and metrics."""

from __future__ import annotations

from flask import Blueprint, render_template

from co2logserver import dashboard_data, metrics
from co2logserver.errors import StorageUnavailable
from co2logserver.store import outbox
from co2logserver.web.common import settings, store

bp = Blueprint("pages", __name__)


@bp.get("/")
@bp.get("/index")
def index():
    """The dashboard: uploads, sensors, the forwarder's backlog, links."""
    return render_template(
        "index.html",
        name=settings()["CO2LOGSERVER_NAME"],
        stats=dashboard_data.overview(store(), settings()),
        silent_after=settings()["CO2LOGSERVER_SILENT_AFTER"],
    )


@bp.get("/health")
def health():
    """Process and database round trip, with the forwarder's backlog.

    Its database work gets ``CO2LOGSERVER_HEALTH_TIMEOUT`` in all, so monitors get
    an answer quickly even from a hung database.

    :raise 503: with ``Retry-After`` when the database is unreachable.
    """
    try:
        with store().reading(budget=settings()["CO2LOGSERVER_HEALTH_TIMEOUT"]) as conn:
            forwarding = outbox.status(conn)
    except StorageUnavailable as error:
        body = {"status": "unavailable", "database": "unreachable"}
        return body, 503, {**error.headers, "Cache-Control": "no-store"}
    forwarding.pop("last_error")  # its text is for the operator's pages, not public
    body = {"status": "ok", "database": "ok", "outbox": forwarding}
    return body, 200, {"Cache-Control": "no-store"}


@bp.get("/metrics")
def prometheus_metrics():
    """Counters and gauges in the Prometheus text format."""
    return metrics.metrics_response(store())

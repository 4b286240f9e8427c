"""Blueprint ``pages``: the dashboard (index page), the health check and metrics."""

from __future__ import annotations

import time

from flask import Blueprint, render_template

from co2logserver import dashboard_data, metrics
from co2logserver.store import outbox
from co2logserver.store.errors import StorageUnavailable
from co2logserver.web.common import settings, store
from co2logserver.web.errors import headers_of

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
    """Process and database round trip, the forwarder's backlog and the spool.

    ``ok``; ``degraded`` (200) while requests wait in the spool or the database is
    away but the spool takes them; ``unavailable`` (503 with ``Retry-After``) when
    the database is away and nothing can take data.

    Its database work gets ``CO2LOGSERVER_HEALTH_TIMEOUT`` in all, so monitors get
    an answer quickly even from a hung database.
    """
    spool = spool_view()
    headers = {"Cache-Control": "no-store"}
    try:
        with store().reading(budget=settings()["CO2LOGSERVER_HEALTH_TIMEOUT"]) as conn:
            forwarding = outbox.status(conn)
    except StorageUnavailable as error:
        body = {"status": "unavailable", "database": "unreachable"}
        if spool is not None and spool["accepting"]:
            return {**body, "status": "degraded", "spool": spool}, 200, headers
        if spool is not None:
            body["spool"] = spool
        return body, 503, {**headers_of(error), **headers}
    forwarding.pop("last_error")  # its text is for the operator's pages, not public
    body = {"status": "ok", "database": "ok", "outbox": forwarding}
    if spool is not None:
        body["spool"] = spool
        if spool["bytes"]:
            body["status"] = "degraded"
    return body, 200, headers


def spool_view() -> dict | None:
    """The spool as ``/health`` shows it, or ``None`` when it is off."""
    spool = store().spool
    if spool is None:
        return None
    status = spool.status()
    age = None if status.oldest_at is None else max(0, time.time() - status.oldest_at)
    return {
        "bytes": status.bytes,
        "segments": status.segments,
        "oldest_age_seconds": None if age is None else round(age, 1),
        "max_bytes": spool.max_bytes,
        "accepting": spool.accepting(status.bytes),
    }


@bp.get("/metrics")
def prometheus_metrics():
    """Counters and gauges in the Prometheus text format."""
    return metrics.metrics_response(store(), settings())

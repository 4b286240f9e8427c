"""Blueprint ``pages``: the index page and the health check."""

from __future__ import annotations

import datetime

from flask import Blueprint, render_template

from co2logserver.errors import StorageUnavailable
from co2logserver.store import queries
from co2logserver.web.common import settings, store

bp = Blueprint("pages", __name__)


@bp.get("/")
@bp.get("/index")
def index():
    """Server name, stored rows and the latest upload time."""
    return render_template(
        "index.html",
        name=settings()["CO2LOGSERVER_NAME"],
        summary=queries.summary(store()),
        now=datetime.datetime.now(datetime.UTC),
    )


@bp.get("/health")
def health():
    """Process and database round trip; 503 when the database is unreachable."""
    try:
        store().ping()
    except StorageUnavailable as error:
        return {"status": "unavailable", "database": "unreachable"}, 503, error.headers
    return {"status": "ok", "database": "ok"}

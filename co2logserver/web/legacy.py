"""Blueprint ``legacy``: ``/upload``, ``/download`` and ``/uploadhelp`` as in 0.1.2."""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, render_template, request, stream_with_context

from co2logserver import applier, auth, dashboard_data, limits, metrics
from co2logserver.errors import NotFound
from co2logserver.parsers import parse_upload
from co2logserver.store import queries
from co2logserver.web import export
from co2logserver.web.common import request_bodies, settings, store

bp = Blueprint("legacy", __name__)


def checksum_matches(payload: bytes, required_key: str) -> dict[str, str | None]:
    """Check the salted checksums of ``payload``; enforce them when required.

    :raise Forbidden: 403 when required and missing or refused.
    """
    config = settings()
    checksums = auth.salted_checksums(
        request.headers.items(), config["CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX"]
    )
    matches = auth.match_checksums(
        payload, checksums, config["CO2LOGSERVER_CHECKSUM_SALTS"]
    )
    auth.authorize(matches, config[required_key], config["CO2LOGSERVER_AUTH_CHECKER"])
    return matches


@bp.post("/upload")
@limits.per_address
def upload():
    """Store rows from a JSON, CSV, form or msgpack body."""
    raw, body = request_bodies()
    matches = checksum_matches(raw, "CO2LOGSERVER_UPLOAD_REQUIRES_AUTH")
    batch = parse_upload(body, request.mimetype)
    saved = applier.submit(store(), settings(), "upload", batch=batch, matches=matches)
    metrics.count_rows(saved)
    return {"saved-in-db": saved}


@bp.get("/download")
def download():
    """Rows of the data table as HTML, CSV (a download) or JSON."""
    checksum_matches(request.full_path.encode(), "CO2LOGSERVER_DOWNLOAD_REQUIRES_AUTH")
    config = settings()
    columns = queries.current_columns(store())
    query = queries.parse_download_args(
        request.args, columns, config["CO2LOGSERVER_MAX_LIMIT_OF_ROWS"]
    )
    header, rows = queries.stream_download(store(), query)
    if query.format == "csv":
        name = re.sub(r"\W+", "-", config["CO2LOGSERVER_NAME"])
        return Response(
            stream_with_context(export.stream_csv(header, rows)),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}-data.csv"'},
        )
    if query.format == "json":
        return Response(export.rows_as_json(header, rows), mimetype="application/json")
    args = request.args.to_dict()
    args.pop("format", None)
    return render_template(
        "datapage.html",
        header=header,
        rows=list(rows),
        args=args,
        query=query,
        chart=dashboard_data.chart_columns(header, columns, config),
    )


#: The SUID of the examples (the one of the OpenSmog document).
EXAMPLE_SUID = "123e4567-e89b-12d3-a456-426655440000"


@bp.get("/uploadhelp")
def upload_help():
    """Copy-paste examples for ``/upload`` (with the configured authentication)
    and the OpenSmog API, each with an Arduino sketch."""
    config = settings()
    if not config["CO2LOGSERVER_UPLOAD_HELP"]:
        raise NotFound("The upload help is turned off on this server")
    example = json.dumps({"time": [1700000000, 1700000060], "co2": [412, 415]})
    return render_template(
        "uploadhelp.html",
        example=example,
        requires_auth=config["CO2LOGSERVER_UPLOAD_REQUIRES_AUTH"],
        salts_configured=bool(config["CO2LOGSERVER_CHECKSUM_SALTS"]),
        time_cols=config["CO2LOGSERVER_TIME_COLS"],
        suid=EXAMPLE_SUID,
        base_url=request.host_url.rstrip("/"),
    )

"""Blueprint ``influx``: InfluxDB's write API for Tasmota, Telegraf and airrohr.

``POST /write`` (1.x) and ``POST /api/v2/write`` (2.x) store line protocol through
:func:`co2logserver.web.common.submit_devices`; ``/ping`` and the ``CREATE DATABASE``
stub of ``/query`` are there so that clients which check the server first start
sending. Errors come in each API's own shape: 1.x ``{"error": …}``, 2.x
``{"code": …, "message": …}`` with ``X-Platform-Error-Code`` (plus ``error``, our
one error field, which InfluxDB clients ignore).

Rate limits: a write is counted per sensor before its body is read, keyed by what
the URL and headers name — the database (bucket) and user — because the series are
known only after parsing; a Telegraf or Tasmota instance posts one batch per
interval, so that key is one device's flow. Over the limit a 1.x client gets
``503`` with ``Retry-After``, never ``429``: Telegraf drops a batch on any 4xx but
retries a 5xx (Tasmota honours ``Retry-After`` on both). 2.x clients get ``429``
with ``Retry-After`` as InfluxDB 2 answers.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, Response, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from co2logserver import limits
from co2logserver.errors import ApiError, BadRequest, PayloadTooLarge
from co2logserver.protocols import influx
from co2logserver.store.errors import StorageUnavailable
from co2logserver.version import __version__
from co2logserver.web.common import request_bodies, submit_devices
from co2logserver.web.errors import headers_of, status_of
from co2logserver.web.openapi.parts import INGEST_ERRORS, responses
from co2logserver.web.openapi.parts import query as param

bp = Blueprint("influx", __name__)

#: What ``X-Influxdb-Version`` claims: the 1.x API whose answers these mimic.
INFLUXDB_VERSION = "1.8.10"
INFLUXDB_BUILD = f"co2logserver {__version__}"
V2_ENDPOINT = "influx.write_v2"
#: InfluxDB 2's error codes (``X-Platform-Error-Code``) by HTTP status.
V2_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    411: "invalid",
    413: "request too large",
    415: "invalid",
    429: "too many requests",
    503: "unavailable",
}
CREATE_DATABASE = re.compile(r"\s*CREATE\s+DATABASE\s+\S", re.IGNORECASE)


@bp.after_request
def influxdb_headers(response: Response) -> Response:
    """Every answer names the InfluxDB API it speaks, as ``influxd`` does."""
    response.headers["X-Influxdb-Version"] = INFLUXDB_VERSION
    response.headers["X-Influxdb-Build"] = INFLUXDB_BUILD
    return response


def v1_device_key() -> str:
    """The per-sensor rate-limit key of a 1.x write: database and user."""
    user = influx.v1_user(request.args, request.headers.get("Authorization"))
    return f"influx:{request.args.get('db', '')}:{user}"


def v2_device_key() -> str:
    """The per-sensor rate-limit key of a 2.x write: organisation and bucket."""
    args = request.args
    return (
        f"influx2:{args.get('org') or args.get('orgID', '')}:{args.get('bucket', '')}"
    )


@bp.post("/write")
@limits.per_device(v1_device_key)
def write_v1():
    """Store an InfluxDB 1.x write (``db`` required; ``rp`` accepted and unused)."""
    if not request.args.get("db"):
        raise BadRequest("database is required (add ?db=<name> to the URL)")
    precision = influx.checked_precision(
        request.args.get("precision"), influx.V1_PRECISIONS
    )
    credential = influx.v1_credential(
        request.args, request.headers.get("Authorization")
    )
    return store_write(precision, credential, influx.V1_HINT)


@bp.post("/api/v2/write")
@limits.per_device(v2_device_key)
def write_v2():
    """Store an InfluxDB 2.x write (``bucket`` required; ``org`` accepted)."""
    if not request.args.get("bucket"):
        raise BadRequest("bucket is required (add ?bucket=<name> to the URL)")
    precision = influx.checked_precision(
        request.args.get("precision"), influx.V2_PRECISIONS
    )
    credential = influx.v2_credential(request.headers.get("Authorization"))
    return store_write(precision, credential, influx.V2_HINT)


def store_write(precision: str, credential: str | None, hint: str) -> Response:
    """Parse the body (raw, whatever the Content-Type says) and store it; 204."""
    _, body = request_bodies()
    write = influx.parse_write(body, precision, int(time.time()), credential, hint)
    submit_devices(write.request, write.ignored_fields)
    return Response(status=204)


@bp.route("/ping", methods=["GET", "HEAD"])
def ping():
    """204 as ``influxd`` answers; 200 with the version for ``verbose=true``."""
    if request.args.get("verbose", "").lower() not in ("", "0", "false"):
        return {"version": INFLUXDB_VERSION}, 200
    return Response(status=204)


@bp.route("/query", methods=["GET", "POST"])
def query():
    """``CREATE DATABASE`` answered as done (every database is one store).

    :raise BadRequest: for a missing ``q`` or any other statement.
    """
    text = request.values.get("q")
    if not text:
        raise BadRequest('missing required parameter "q"')
    statements = [s for s in text.split(";") if s.strip()]
    if not statements or not all(CREATE_DATABASE.match(s) for s in statements):
        raise BadRequest(
            "this server stores InfluxDB writes only: /query answers CREATE "
            "DATABASE (as done) and nothing else"
        )
    return {"results": [{"statement_id": i} for i in range(len(statements))]}, 200


def is_v2() -> bool:
    """Whether the request went to the 2.x API."""
    return request.endpoint == V2_ENDPOINT


def error_answer(status: int, message: str, headers: dict) -> tuple[Any, int, dict]:
    """An error in the shape of the API the request went to."""
    if not is_v2():
        return {"error": message}, status, headers
    code = V2_CODES.get(status, "internal error")
    body = {"code": code, "message": message, "error": message}
    return body, status, {**headers, "X-Platform-Error-Code": code}


@bp.errorhandler(ApiError)
@bp.errorhandler(StorageUnavailable)
def api_error(error: ApiError | StorageUnavailable):
    """Our errors, the store's outage too, in the InfluxDB API's shape; 1.x never
    sees a 429."""
    status, headers = status_of(error), headers_of(error)
    if status == 429 and not is_v2():
        return error_answer(503, error.message, headers)
    return error_answer(status, error.message, headers)


@bp.errorhandler(RateLimitExceeded)
def rate_limited(error: RateLimitExceeded):
    """Over the per-sensor or per-address limit: 1.x 503, 2.x 429, Retry-After."""
    message, status, headers = limits.too_many_requests(error)
    status = 429 if is_v2() else 503
    return error_answer(status, message["error"], headers)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    """werkzeug's own errors (a body over the size limit, …) in the API's shape."""
    if error.code == 413:
        return api_error(PayloadTooLarge("Request Entity Too Large"))
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    headers.pop("Content-Length", None)
    return error_answer(error.code or 500, error.description or error.name, headers)


def write_operation(summary: str, parameters: list, security: str) -> dict:
    """The OpenAPI operation of a write."""
    return {
        "summary": summary,
        "tags": ["protocols"],
        "parameters": parameters,
        "description": f"Credential: {security}.",
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "responses": responses(
            {"204": {"description": "Stored (empty body)."}}, INGEST_ERRORS
        ),
    }


def openapi_paths() -> dict[str, Any]:
    """This blueprint's entries of ``/openapi.json``."""
    ping_answers = responses(
        {
            "200": {
                "description": "verbose=true: the version.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "204": {"description": "Up."},
        },
        (),
    )
    return {
        "/write": {
            "post": write_operation(
                "Store InfluxDB 1.x line protocol (Tasmota, Telegraf, airrohr).",
                [
                    param("db", "database (required; any name)"),
                    param("rp", "retention policy (ignored)"),
                    param("precision", "n, ns, u, us, ms, s, m or h (default n)"),
                    param("u", "user"),
                    param("p", "password: the sensor's SECRET"),
                ],
                "p=, HTTP Basic or Authorization: Token user:SECRET",
            )
        },
        "/api/v2/write": {
            "post": write_operation(
                "Store InfluxDB 2.x line protocol.",
                [
                    param("bucket", "bucket (required; any name)"),
                    param("org", "organisation (ignored)"),
                    param("precision", "ns, us, ms or s (default ns)"),
                ],
                "Authorization: Token SECRET (or Bearer)",
            )
        },
        "/ping": {
            "get": {
                "summary": "InfluxDB ping.",
                "tags": ["protocols"],
                "parameters": [param("verbose", "true: 200 with version")],
                "responses": ping_answers,
            }
        },  # fmt: skip
        "/query": {
            method: {
                "summary": "InfluxQL stub: CREATE DATABASE only.",
                "tags": ["protocols"],
                "parameters": [param("q", "CREATE DATABASE <name>")],
                "responses": responses(
                    {
                        "200": {
                            "description": "Done.",
                            "content": {
                                "application/json": {"schema": {"type": "object"}}
                            },
                        }
                    },
                    ("400",),
                ),
            }
            for method in ("get", "post")
        },
    }


OPENAPI_PATHS = openapi_paths()

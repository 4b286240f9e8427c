"""Note the refused requests of sensors over HTTP for their owners (SPEC §12).

An app-wide ``after_request`` hook sees every answer, error handlers' included: a
POST or PUT that names a SUID in its URL and was refused (4xx) goes to
:func:`co2logserver.rejected.note` with its status, the error message the sensor
got, the route and the start of its body.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

from co2logserver import rejected
from co2logserver.web.common import store

#: Largest body whose start is kept (a larger one may not have been read at all).
EXCERPT_BODY_MAX = 64 * 1024
#: Blueprints whose requests are owners' or readers', not sensors'.
NOT_SENSORS = frozenset({"owners", "accounts", "dashboard", "map", "pages"})
#: Names of the routes in the owner's table.
PROTOCOLS = {
    "sensors.register": "OpenSmog register (PUT /v1)",
    "sensors.readings": "OpenSmog readings (/v1)",
    "sensors.rogue_readings": "OpenSmog rogue readings (/rogue/v1)",
}


def init_app(app: Flask) -> None:
    """Note refused sensor requests."""
    app.after_request(note_rejection)


def note_rejection(response: Response) -> Response:
    """Note the request if it was a sensor's and was refused."""
    suid = (request.view_args or {}).get("suid")
    if (
        suid
        and 400 <= response.status_code < 500
        and request.method in ("POST", "PUT")
        and request.blueprint not in NOT_SENSORS
    ):
        endpoint = request.endpoint or "?"
        rejected.note(
            store(),
            str(suid),
            response.status_code,
            PROTOCOLS.get(endpoint, endpoint),
            error_message(response),
            body_start(response.status_code),
        )
    return response


def error_message(response: Response) -> str:
    """The ``error`` text of a JSON error answer (or its status line)."""
    try:
        body = json.loads(response.get_data())
        message = body["error"] if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError, RuntimeError):
        message = None
    return str(message or response.status)


def body_start(status: int) -> bytes | None:
    """The start of a small, plain request body, already read by the view."""
    if status == 413 or request.headers.get("Content-Encoding"):
        return None
    length = request.content_length
    if length is None or not 0 < length <= EXCERPT_BODY_MAX:
        return None
    return request.get_data(cache=True)[: rejected.EXCERPT * 4]

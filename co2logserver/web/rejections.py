"""Keep the last rejected requests of each sensor for its owner's page (§12).

An app-wide ``after_request`` hook sees every answer, error handlers' included:
a POST or PUT that names an existing sensor's SUID and was refused (4xx) is kept
with its time, status, the error message the sensor got, the route (protocol) and
the first bytes of its body; at most
:data:`~co2logserver.store.accounts.REJECTIONS_KEPT` per sensor. Headers (the
OpenSmogHash among them) are never kept. Keeping it never fails the request.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from flask import Flask, Response, request

from co2logserver.store import accounts as sql
from co2logserver.web.common import store

log = logging.getLogger(__name__)

#: Bytes of the body kept.
EXCERPT = 120
#: Largest body whose start is kept (a larger one may not have been read at all).
EXCERPT_BODY_MAX = 64 * 1024
#: Blueprints whose requests are owners' or readers', not sensors'.
NOT_SENSORS = frozenset({"owners", "accounts", "dashboard", "map", "pages"})
#: A sensor over its rate limit is noted at most once per this many seconds (per
#: process), so a flood of 429s costs no write each.
THROTTLE_SECONDS = 60.0
#: Names of the routes in the owner's table.
PROTOCOLS = {
    "sensors.register": "OpenSmog register (PUT /v1)",
    "sensors.readings": "OpenSmog readings (/v1)",
    "sensors.rogue_readings": "OpenSmog rogue readings (/rogue/v1)",
}

_throttled: dict[str, float] = {}
_lock = threading.Lock()


def init_app(app: Flask) -> None:
    """Keep rejected sensor requests."""
    app.after_request(note_rejection)


def note_rejection(response: Response) -> Response:
    """Keep the request if it was a sensor's and was refused; never raise."""
    suid = (request.view_args or {}).get("suid")
    if (
        not suid
        or not 400 <= response.status_code < 500
        or request.method not in ("POST", "PUT")
        or request.blueprint in NOT_SENSORS
    ):
        return response
    try:
        keep(str(suid).lower(), response)
    except Exception:  # the owner's table is a courtesy; the answer stands
        log.warning("could not keep a rejected request", exc_info=True)
    return response


def keep(suid: str, response: Response) -> None:
    """Write the row (unless throttled)."""
    if response.status_code == 429 and throttled(suid):
        return
    values = {
        "suid": suid[:36],
        "at": int(time.time()),
        "status": response.status_code,
        "protocol": PROTOCOLS.get(request.endpoint or "", request.endpoint or "?")[:64],
        "message": error_message(response),
        "excerpt": body_excerpt(response.status_code),
    }
    with store().transaction() as conn:
        sql.record_rejection(conn, values)


def throttled(suid: str) -> bool:
    """Whether a 429 of ``suid`` was noted less than a minute ago."""
    now = time.monotonic()
    with _lock:
        if now - _throttled.get(suid, -THROTTLE_SECONDS) < THROTTLE_SECONDS:
            return True
        if len(_throttled) > 10_000:
            _throttled.clear()
        _throttled[suid] = now
    return False


def error_message(response: Response) -> str:
    """The ``error`` text of a JSON error answer (or its status line)."""
    try:
        body = json.loads(response.get_data())
        message = body["error"] if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError, RuntimeError):
        message = None
    return str(message or response.status)[:500]


def body_excerpt(status: int) -> str | None:
    """The start of a small, plain request body, already read by the view."""
    if status == 413 or request.headers.get("Content-Encoding"):
        return None
    length = request.content_length
    if length is None or not 0 < length <= EXCERPT_BODY_MAX:
        return None
    raw = request.get_data(cache=True)[:EXCERPT]
    return raw.decode("utf-8", "replace")

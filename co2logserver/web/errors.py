"""How the HTTP layer answers errors: the JSON shape, an HTML 404 for browsers.

The API's exceptions, and their statuses, are :mod:`co2logserver.errors`; the
store's outage (:class:`~co2logserver.store.errors.StorageUnavailable`, which knows
nothing of HTTP) becomes a 503 with ``Retry-After`` here, in :func:`status_of` and
:func:`headers_of`, so that every page answers it alike.
"""

from __future__ import annotations

from flask import current_app, render_template, request
from werkzeug.exceptions import HTTPException

from co2logserver.errors import ApiError, HashMismatch, error_body
from co2logserver.store.errors import StorageUnavailable

#: The errors a request is answered with: the API's own and the store's outage.
ANSWERED = (ApiError, StorageUnavailable)
#: The status of the store's outage: the client should retry, nothing is wrong.
STORAGE_UNAVAILABLE_STATUS = 503

#: Methods that never store anything: their 503 does not say "Nothing was stored".
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


#: What a hash mismatch of a gzip body is most likely about.
GZIP_HASH_NOTE = (
    " This body is gzip-compressed (Content-Encoding: gzip): the hash covers the "
    "compressed bytes exactly as sent, not the JSON inside them."
)


def status_of(error: ApiError | StorageUnavailable) -> int:
    """The HTTP status of an answered error (503 for the store's outage)."""
    if isinstance(error, StorageUnavailable):
        return STORAGE_UNAVAILABLE_STATUS
    return error.status


def headers_of(error: ApiError | StorageUnavailable) -> dict[str, str]:
    """The headers of an answered error: ``Retry-After`` when the store advises one."""
    if isinstance(error, StorageUnavailable):
        if error.retry_after is None:
            return {}
        return {"Retry-After": str(error.retry_after)}
    return error.headers


def request_notes(error: ApiError | StorageUnavailable) -> str:
    """What the request adds to an error's message: a write stored nothing, and
    a mismatching hash of a gzip body covers the compressed bytes."""
    notes = ""
    if isinstance(error, StorageUnavailable) and request.method not in SAFE_METHODS:
        notes += " Nothing was stored."
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if isinstance(error, HashMismatch) and encoding in ("gzip", "x-gzip"):
        notes += GZIP_HASH_NOTE
    return notes


def wants_html() -> bool:
    """Whether the client is a browser: it prefers text/html to JSON.

    API clients (``*/*``, ``application/json`` or no Accept at all) get JSON.
    """
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def html_not_found(message: str):
    """The 404 page for a browser, with links to the pages that exist."""
    return render_template("404.html", message=message), 404


def _api_error_response(error: ApiError | StorageUnavailable):
    message = error.message + request_notes(error)
    status = status_of(error)
    if status == 404 and wants_html():
        return html_not_found(message)
    return error_body(message), status, headers_of(error)


def _http_error_response(error: HTTPException):
    """Turn werkzeug's routing and size errors (404, 405, 413, 429...) into JSON."""
    message = error.description or error.name
    if error.code == 413:
        limit = current_app.config.get("CO2LOGSERVER_MAX_CONTENT_LENGTH")
        message = (
            f"The request body is too large: over the limit of {limit} bytes "
            "(CO2LOGSERVER_MAX_CONTENT_LENGTH); send less per request"
        )
    if error.code == 404 and wants_html():
        return html_not_found(
            f"There is no page at {request.path[:200]} on this server."
        )
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    headers.pop("Content-Length", None)
    return error_body(message), error.code, headers


def register_error_handlers(app) -> None:
    """Answer every API error, the store's outage, and werkzeug's own HTTP errors,
    as JSON."""
    app.register_error_handler(ApiError, _api_error_response)
    app.register_error_handler(StorageUnavailable, _api_error_response)
    app.register_error_handler(HTTPException, _http_error_response)

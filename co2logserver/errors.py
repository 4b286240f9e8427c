"""One JSON error shape for the whole API, raised as exceptions carrying a status.

Every error a client sees is ``{"error": "<what was wrong and how to fix it>"}``.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, request
from werkzeug.exceptions import HTTPException


class ConfigError(Exception):
    """A configuration that cannot work; the message names the key."""


class ApiError(Exception):
    """Base of all errors answered to a client; ``status`` is the HTTP status."""

    status = 400
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if headers:
            self.headers = headers


class BadRequest(ApiError):
    """The body or the query is malformed or invalid."""

    status = 400


class BadOpenSmogHash(ApiError):
    """The OpenSmogHash does not match the body and the sensor's SECRET."""

    status = 401


class WrongCredential(BadOpenSmogHash):
    """A protocol's credential slot (Basic, ``p``, ``Token``) holds a wrong SECRET."""


class TooManyRequests(ApiError):
    """A limit counted after the request was read (a device named in its body)."""

    status = 429


class HashMismatch(BadOpenSmogHash):
    """The hash was well-formed but covers other bytes than the ones received."""


class Forbidden(ApiError):
    """Authentication is missing or refused."""

    status = 403


class NotFound(ApiError):
    """The resource does not exist."""

    status = 404


class Conflict(ApiError):
    """The request conflicts with the current state (e.g. re-registration is off)."""

    status = 409


class LengthRequired(ApiError):
    """The body is framed by neither Content-Length nor chunked encoding."""

    status = 411


class PayloadTooLarge(ApiError):
    """The body, the batch or the decompressed body is too large."""

    status = 413


class UnsupportedMediaType(ApiError):
    """The Content-Type or Content-Encoding is not supported."""

    status = 415


class StorageUnavailable(ApiError):
    """The database cannot be reached or is locked; the client should retry."""

    status = 503


def error_body(message: str) -> dict[str, Any]:
    """Return the one JSON error shape: ``{"error": message}``."""
    return {"error": message}


#: Methods that never store anything: their 503 does not say "Nothing was stored".
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


#: What a hash mismatch of a gzip body is most likely about.
GZIP_HASH_NOTE = (
    " This body is gzip-compressed (Content-Encoding: gzip): the hash covers the "
    "compressed bytes exactly as sent, not the JSON inside them."
)


def request_notes(error: ApiError) -> str:
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


def _api_error_response(error: ApiError):
    message = error.message + request_notes(error)
    if error.status == 404 and wants_html():
        return html_not_found(message)
    return error_body(message), error.status, error.headers


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
    """Answer every API error, and werkzeug's own HTTP errors, as JSON."""
    app.register_error_handler(ApiError, _api_error_response)
    app.register_error_handler(HTTPException, _http_error_response)

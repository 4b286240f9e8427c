"""One JSON error shape for the whole API, raised as exceptions carrying a status.

Every error a client sees is ``{"error": "<what was wrong and how to fix it>"}``;
:mod:`co2logserver.web.errors` answers them. No Flask here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: How many problems one error message lists; the rest are counted.
MAX_ERRORS = 20


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


class ArchiveUnavailable(ApiError):
    """A daily archive file failed its checksum: it is not served until rewritten."""

    status = 503


def error_body(message: str) -> dict[str, Any]:
    """Return the one JSON error shape: ``{"error": message}``."""
    return {"error": message}


def raise_errors(errors: Sequence[str], error_class: type[ApiError] = BadRequest):
    """Raise one error listing the first problems found (none: return).

    Every check collects all its problems first, so a client fixes a request in one
    round; :data:`MAX_ERRORS` keeps the message readable.
    """
    if errors:
        more = (
            f" (and {len(errors) - MAX_ERRORS} more)"
            if len(errors) > MAX_ERRORS
            else ""
        )
        raise error_class("; ".join(errors[:MAX_ERRORS]) + more)

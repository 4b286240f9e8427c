"""What every view needs from the request: the body as sent and as meant."""

from __future__ import annotations

from flask import current_app, request

from co2logserver.errors import BadRequest, PayloadTooLarge
from co2logserver.parsers import decode_content
from co2logserver.store import Store, get_store


def settings():
    """The app's configuration (keys ``CO2LOGSERVER_*``)."""
    return current_app.config


def store() -> Store:
    """The app's store."""
    return get_store(current_app)


def framing_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP server raises while reading a body whose framing is broken.

    werkzeug's dechunker raises OSError/ValueError; gunicorn its ParseException
    family (InvalidChunkSize, ChunkMissingTerminator, ...).
    """
    errors: tuple[type[BaseException], ...] = (OSError, ValueError)
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # the dev server without gunicorn installed
        return errors
    return (*errors, ParseException)


FRAMING_ERRORS = framing_errors()


def request_bodies() -> tuple[bytes, bytes]:
    """The body as sent (what hashes cover) and with Content-Encoding undone.

    :raise PayloadTooLarge: when the body or its decompressed size is too large.
    :raise UnsupportedMediaType: for an encoding other than gzip.
    """
    try:
        raw = request.get_data(cache=True)
    except FRAMING_ERRORS as error:
        raise BadRequest(
            "The request body cannot be read: its chunked transfer encoding is "
            f"malformed ({type(error).__name__}); send Content-Length or valid chunks"
        ) from None
    limit = settings()["CO2LOGSERVER_MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(raw) >= limit:
        # werkzeug cuts a chunked body at the limit silently: never store a part.
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    return raw, decode_content(raw, request.headers.get("Content-Encoding"), limit)

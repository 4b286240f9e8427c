"""What every view needs from the request: the body as sent and as meant."""

from __future__ import annotations

from flask import current_app, request

from co2logserver.errors import PayloadTooLarge
from co2logserver.parsers import decode_content
from co2logserver.store import Store, get_store


def settings():
    """The app's configuration (keys ``CO2LOGSERVER_*``)."""
    return current_app.config


def store() -> Store:
    """The app's store."""
    return get_store(current_app)


def request_bodies() -> tuple[bytes, bytes]:
    """The body as sent (what hashes cover) and with Content-Encoding undone.

    :raise PayloadTooLarge: when the body or its decompressed size is too large.
    :raise UnsupportedMediaType: for an encoding other than gzip.
    """
    raw = request.get_data(cache=True)
    limit = settings()["CO2LOGSERVER_MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(raw) >= limit:
        # werkzeug cuts a chunked body at the limit silently: never store a part.
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    return raw, decode_content(raw, request.headers.get("Content-Encoding"), limit)

"""What every view needs from the request: the body as sent and as meant."""

from __future__ import annotations

from flask import current_app, request

from co2logserver import applier, metrics
from co2logserver.errors import (
    BadRequest,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
)
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


def is_framed() -> bool:
    """Whether the body has a length: Content-Length or chunked encoding.

    An HTTP/1.0 client that sends neither has its body read as empty (gunicorn
    reads no bytes), which it would be told is "not valid JSON".
    """
    if request.content_length is not None:  # the common case: no header parsing
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def request_bodies(body_required: bool = True) -> tuple[bytes, bytes]:
    """The body as sent (what hashes cover) and with Content-Encoding undone.

    :param body_required: a body must be framed (411 when it is not); a PUT of a
        registration may have none.
    :raise LengthRequired: 411 for a body without Content-Length nor chunks.
    :raise PayloadTooLarge: when the body or its decompressed size is too large.
    :raise UnsupportedMediaType: for an encoding other than gzip.
    """
    if body_required and not is_framed():
        raise LengthRequired(
            "The request has neither Content-Length nor Transfer-Encoding: chunked, "
            "so its body cannot be read; send a Content-Length header"
        )
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
        raise PayloadTooLarge(
            f"The request body is too large: over the limit of {limit} bytes "
            "(CO2LOGSERVER_MAX_CONTENT_LENGTH); send less per request"
        )
    return raw, decode_content(raw, request.headers.get("Content-Encoding"), limit)


#: Structured formats a readings POST may be sent in by mistake; anything else
#: (none, text/plain, application/octet-stream) is read as JSON, since tiny HTTP
#: clients cannot always set a Content-Type.
OTHER_FORMATS = (
    "text/csv",
    "application/x-www-form-urlencoded",
    "application/msgpack",
    "application/x-msgpack",
)


def require_json_readings() -> None:
    """Refuse a readings body declared as another structured format.

    :raise UnsupportedMediaType: 415 saying to send JSON.
    """
    mimetype = request.mimetype
    if mimetype in OTHER_FORMATS or mimetype.startswith("multipart/"):
        hint = ""
        if mimetype == "application/x-www-form-urlencoded":
            # What curl --data and Python's urllib declare unless told otherwise.
            hint = " (curl: add -H 'Content-Type: application/json')"
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not read here: send the readings as a "
            f"JSON array of observations with Content-Type: application/json{hint}"
        )


def submit_devices(request_of_devices, ignored_fields: int = 0):
    """Store a firmware protocol's request (or spool it) and count it per protocol.

    What every adapter of ``co2logserver.web.protocols`` ends with.
    """
    result = applier.submit(store(), settings(), "devices", request=request_of_devices)
    metrics.count_protocol(
        request_of_devices.protocol,
        result.stored,
        len(result.refused_names),
        ignored_fields,
    )
    return result

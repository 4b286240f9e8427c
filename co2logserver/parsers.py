"""Turn request bodies into rows: pure functions of (bytes, media type).

Legacy ``/upload`` accepts JSON, CSV, form and msgpack; every parser returns a list
of row dicts (column -> value) and raises an :class:`~co2logserver.errors.ApiError`
with a message a sensor owner can act on.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from co2logserver.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

Row = dict[str, Any]

INTEGER = re.compile(r"[+-]?\d+")
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a ``Content-Encoding``, refusing output over ``limit`` bytes.

    Decompression stops one byte past the limit, so a gzip bomb costs little memory.

    :raise UnsupportedMediaType: for encodings other than gzip and identity.
    :raise PayloadTooLarge: when the decompressed body is over ``limit``.
    :raise BadRequest: when the gzip stream is broken.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip or none"
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise BadRequest(f"The gzip body cannot be decompressed: {error}") from None
    if len(data) > limit:
        raise PayloadTooLarge(
            f"The decompressed body is larger than {limit} bytes; send less per request"
        )
    if not inflater.eof:
        raise BadRequest("The gzip body is truncated")
    return data


def coerce_number(text: str) -> Any:
    """Read text as int or float when it is written as a number, else keep the text.

    Only plain decimal notation counts, so ``nan``, ``inf`` and ``1_000`` stay text.
    """
    if INTEGER.fullmatch(text):
        return int(text)
    if DECIMAL.fullmatch(text):
        return float(text)
    return text


def rows_from_columns(data: dict[str, Any]) -> list[Row]:
    """Turn ``{"col": [v1, v2], "other": v}`` into rows; a scalar is one value.

    Shorter columns leave the later rows without a value for them, as in 0.1.2.
    """
    columns = {
        name: values if isinstance(values, list) else [values]
        for name, values in data.items()
    }
    length = max((len(values) for values in columns.values()), default=0)
    return [
        {name: values[i] for name, values in columns.items() if i < len(values)}
        for i in range(length)
    ]


def rows_from_structure(data: Any, what: str) -> list[Row]:
    """Accept an object of columns or a list of row objects."""
    if isinstance(data, dict):
        return rows_from_columns(data)
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return list(data)
    raise BadRequest(
        f"The {what} body must be an object of columns, e.g. "
        '{"time":[43,23],"co2":[1223,2351]}, or a list of row objects'
    )


def parse_json(body: bytes) -> list[Row]:
    """Parse a JSON body of columns or rows."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None
    return rows_from_structure(data, "JSON")


def parse_msgpack(body: bytes) -> list[Row]:
    """Parse a msgpack body holding the JSON shapes."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack is a default dependency
        raise UnsupportedMediaType("This server cannot read msgpack") from None
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises many unrelated types
        raise BadRequest(f"The body is not valid msgpack: {error}") from None
    return rows_from_structure(data, "msgpack")


def decode_text(body: bytes, what: str) -> str:
    """Decode a text body as UTF-8 (a BOM is dropped)."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"The {what} body is not UTF-8: {error}") from None


def parse_csv(body: bytes) -> list[Row]:
    """Parse CSV with a header line; numbers become int or float, empty cells none."""
    reader = csv.reader(io.StringIO(decode_text(body, "CSV"), newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise BadRequest("The CSV body needs a header line, e.g. time,co2")
        rows = []
        for line, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) > len(header):
                raise BadRequest(
                    f"CSV line {line} has {len(cells)} cells, "
                    f"but the header names {len(header)} columns"
                )
            rows.append(
                {
                    name.strip(): coerce_number(cell)
                    for name, cell in zip(header, cells, strict=False)
                    if cell != ""
                }
            )
    except csv.Error as error:
        raise BadRequest(f"The CSV body cannot be read: {error}") from None
    return rows


def parse_form(body: bytes) -> list[Row]:
    """Parse ``a=1&b=2&a=3&b=4``: repeated keys are the rows of a column."""
    columns: dict[str, list[Any]] = {}
    try:
        pairs = parse_qsl(
            decode_text(body, "form"), keep_blank_values=True, strict_parsing=False
        )
    except ValueError as error:
        raise BadRequest(f"The form body cannot be read: {error}") from None
    for name, value in pairs:
        columns.setdefault(name, []).append(coerce_number(value) if value else None)
    return rows_from_columns(columns)


PARSERS: dict[str, Callable[[bytes], list[Row]]] = {
    "application/json": parse_json,
    "text/csv": parse_csv,
    "application/x-www-form-urlencoded": parse_form,
    **{mimetype: parse_msgpack for mimetype in MSGPACK_TYPES},
}


def parse_upload(body: bytes, mimetype: str | None) -> list[Row]:
    """Parse an ``/upload`` body by its media type.

    :raise UnsupportedMediaType: for a missing or unknown Content-Type.
    :raise BadRequest: for a body that does not parse.
    """
    parser = PARSERS.get((mimetype or "").lower())
    if parser is None:
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'!r} is not supported; use one of "
            + ", ".join(PARSERS)
        )
    return parser(body)


def parse_json_document(body: bytes) -> Any:
    """Parse a JSON body of the sensor API (any shape; the caller checks it)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None

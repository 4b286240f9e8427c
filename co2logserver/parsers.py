"""Turn request bodies into rows: pure functions of (bytes, media type).

Legacy ``/upload`` accepts JSON, CSV, form and msgpack; every parser returns a
:class:`Batch` of values by column and raises an :class:`~co2logserver.errors.ApiError`
with a message a sensor owner can act on.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from co2logserver.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

Row = dict[str, Any]

INTEGER_TEXT = r"[+-]?\d+"
#: Plain decimal notation, written so that a text matches it in one way only.
DECIMAL_TEXT = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
INTEGER = re.compile(INTEGER_TEXT)
DECIMAL = re.compile(DECIMAL_TEXT)
#: A column's cells joined by newlines: all integers, or all numbers. Possessive,
#: so a column that does not match fails in linear time.
INTEGER_LINES = re.compile(rf"(?:{INTEGER_TEXT}\n)*+{INTEGER_TEXT}")
NUMBER_LINES = re.compile(rf"(?:{DECIMAL_TEXT}\n)*+{DECIMAL_TEXT}")

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
    data, rest = b"", body
    while True:  # every member: gzip and zcat concatenate files this way
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data += inflater.decompress(rest, limit + 1 - len(data))
        except zlib.error as error:
            raise BadRequest(f"The gzip body cannot be decompressed: {error}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"The decompressed body is larger than {limit} bytes "
                "(CO2LOGSERVER_MAX_CONTENT_LENGTH); send less per request"
            )
        if not inflater.eof:
            raise BadRequest("The gzip body is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # trailing zero padding is allowed by gzip(1)
            return data


#: Digits beyond which an integer is out of every column's range anyway.
MAX_INT_DIGITS = 40


def read_int(text: str) -> int:
    """``int(text)``, but a number of more than 40 digits (which Python refuses to read
    past 4300) becomes one just as far out of the 64-bit range, so that ingest names
    it as out of range instead of failing."""
    if len(text) > MAX_INT_DIGITS:
        return -(2**64) if text.startswith("-") else 2**64
    return int(text)


def coerce_number(text: str) -> Any:
    """Read text as int or float when it is written as a number, else keep the text.

    Only plain decimal notation counts, so ``nan``, ``inf`` and ``1_000`` stay text.
    """
    if INTEGER.fullmatch(text):
        return read_int(text)
    if DECIMAL.fullmatch(text):
        return float(text)
    return text


def coerce_column(cells: list[str]) -> list[Any]:
    """:func:`coerce_number` for every cell of a column; empty cells become ``None``.

    A column of sensor data is nearly always all numbers: one regex over the whole
    column decides that, instead of one or two per cell. (A quoted cell may hold a
    newline, so the line count must match the cell count.)
    """
    joined = "\n".join(cells)
    if joined.count("\n") == len(cells) - 1:
        if INTEGER_LINES.fullmatch(joined):
            return list(map(read_int, cells))
        if NUMBER_LINES.fullmatch(joined):
            return [
                read_int(c) if c.lstrip("+-").isdigit() else float(c) for c in cells
            ]
    return [coerce_number(c) if c != "" else None for c in cells]


@dataclass
class Batch:
    """Uploaded values by column: every column holds ``length`` values.

    ``None`` stands for a missing value. Ingest works column by column, which is
    what makes a 100-row upload cost little more than a 1-row one.
    """

    columns: dict[str, list[Any]] = field(default_factory=dict)
    length: int = 0

    def rows(self) -> list[Row]:
        """The values as row dicts, missing values left out."""
        names = list(self.columns)
        return (
            [
                {n: v for n, v in zip(names, values, strict=True) if v is not None}
                for values in zip(*self.columns.values(), strict=True)
            ]
            if names
            else [{} for _ in range(self.length)]
        )


def batch_from_columns(data: dict[str, Any]) -> Batch:
    """``{"col": [v1, v2], "other": v}``: a scalar is one value.

    Shorter columns leave the later rows without a value for them, as in 0.1.2.
    """
    columns = {
        str(name): values if isinstance(values, list) else [values]
        for name, values in data.items()
    }
    length = max(map(len, columns.values()), default=0)
    for values in columns.values():
        values.extend([None] * (length - len(values)))
    return Batch(columns, length)


def batch_from_rows(rows: list[dict[str, Any]]) -> Batch:
    """A list of row objects; a column missing from a row has no value there."""
    names = dict.fromkeys(str(name) for row in rows for name in row)
    columns = {name: [row.get(name) for row in rows] for name in names}
    return Batch(columns, len(rows))


def batch_from_structure(data: Any, what: str) -> Batch:
    """Accept an object of columns or a list of row objects."""
    if isinstance(data, dict):
        return batch_from_columns(data)
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return batch_from_rows(data)
    raise BadRequest(
        f"The {what} body must be an object of columns, e.g. "
        '{"time":[43,23],"co2":[1223,2351]}, or a list of row objects'
    )


def parse_json(body: bytes) -> Batch:
    """Parse a JSON body of columns or rows."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None
    return batch_from_structure(data, "JSON")


def parse_msgpack(body: bytes) -> Batch:
    """Parse a msgpack body holding the JSON shapes."""
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack is a default dependency
        raise UnsupportedMediaType("This server cannot read msgpack") from None
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises many unrelated types
        raise BadRequest(f"The body is not valid msgpack: {error}") from None
    return batch_from_structure(data, "msgpack")


def decode_text(body: bytes, what: str) -> str:
    """Decode a text body as UTF-8 (a BOM is dropped)."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"The {what} body is not UTF-8: {error}") from None


def parse_csv(body: bytes) -> Batch:
    """Parse CSV with a header line; numbers become int or float, empty cells none.

    :raise BadRequest: for a row with more or fewer cells than the header.
    """
    reader = csv.reader(io.StringIO(decode_text(body, "CSV"), newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise BadRequest("The CSV body needs a header line, e.g. time,co2")
        rows: list[list[str]] = []
        for line, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) != len(header):
                # A short row used to be padded with NULLs: refuse it, since the
                # values of a short row may belong to other columns than it seems.
                raise BadRequest(
                    f"CSV line {line} (row {len(rows) + 1}) has {len(cells)} "
                    f"cells, but the header names {len(header)} columns; "
                    "nothing of this upload was stored"
                )
            rows.append(cells)
    except csv.Error as error:
        raise BadRequest(f"The CSV body cannot be read: {error}") from None
    names = [name.strip() for name in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadRequest(
            f"The CSV header names column {repeated[0]!r} more than once; "
            "each column may appear once"
        )
    columns = zip(*rows, strict=True) if rows else ([] for _ in header)
    return Batch(
        {
            name.strip(): coerce_column(list(cells))
            for name, cells in zip(header, columns, strict=True)
        },
        len(rows),
    )


def parse_form(body: bytes) -> Batch:
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
    return batch_from_columns(columns)


PARSERS: dict[str, Callable[[bytes], Batch]] = {
    "application/json": parse_json,
    "text/csv": parse_csv,
    "application/x-www-form-urlencoded": parse_form,
    **{mimetype: parse_msgpack for mimetype in MSGPACK_TYPES},
}


def parse_upload(body: bytes, mimetype: str | None) -> Batch:
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

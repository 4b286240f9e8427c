"""InfluxDB line protocol: request bytes to points, by InfluxDB 1.x's own rules.

``measurement[,tag=value...] field=value[,field=value...] [timestamp]``, one point a
line (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/).
The rules follow what a real ``influxd`` accepts, which
``tests/test_influx_differential.py`` checks against one started in the tests:

* ``#`` after optional blanks starts a comment line; blank lines are skipped.
* Measurement, tag keys and values, and field keys end at an unescaped ``,`` or
  space (tag keys and field keys also at ``=``); ``\\,`` ``\\ `` ``\\=`` stand for
  the character (``\\"`` too in measurements and field keys), any other backslash
  stays as it is. Tags may come in any order; the same tag twice is an error.
* Field values: floats (``-1.5``, ``.5``, ``1e-3``), integers ``12i``, unsigned
  ``12u`` (InfluxDB 2; 1.x refuses them), strings in double quotes (``\\"`` and
  ``\\\\`` escaped; they may hold newlines), booleans ``t T true True TRUE`` and
  ``f F false False FALSE``. No NaN, no infinity, integers within 64 bits.
* The optional timestamp is an integer in the request's precision.

The package's parts: :mod:`~.points` (what a line becomes, times, series keys),
:mod:`~.scanner` (the full scanner, which also words every error) and
:mod:`~.plain` (the fast path of lines without strings or escapes).

One divergence on purpose: a backslash always escapes the character after it here
(``a\\\\,b`` is ``a\\\\`` then a separator), which InfluxDB's own scanners do not
agree on among themselves. Pure: no Flask, no database.
"""

from __future__ import annotations

from co2logserver.errors import BadRequest
from co2logserver.protocols.lineprotocol.plain import plain_point
from co2logserver.protocols.lineprotocol.points import (
    PRECISIONS,
    FieldValue,
    LineError,
    Point,
    check_time,
    escaped_key,
    seconds,
    series_key,
)
from co2logserver.protocols.lineprotocol.scanner import blanks_end, parse_point

__all__ = [
    "PRECISIONS",
    "FieldValue",
    "LineError",
    "Point",
    "escaped_key",
    "parse",
    "parse_any",
    "seconds",
    "series_key",
]

#: How many bad lines one error message lists.
MAX_REPORTED = 5


def parse(body: str, precision: str = "n") -> list[Point]:
    """Every point of a body; comments and blank lines skipped.

    :raise BadRequest: naming each line that is not line protocol (the first few)
        and what is wrong with it; nothing of the body is returned then.
    """
    if precision not in PRECISIONS:
        raise BadRequest(f"precision {precision!r} is unknown")
    if '"' not in body and "\\" not in body:  # no strings, no escapes: line by line
        return parse_plain(body, precision)
    return parse_any(body, precision)


def parse_plain(body: str, precision: str) -> list[Point]:
    """A body without strings or escapes: most lines through :func:`plain_point`.

    Telegraf's and Tasmota's batches are all such lines; anything unusual in a
    line (blanks, control characters, odd values) goes to :func:`parse_point`,
    the full parser, which also words every error.
    """
    points, errors = [], []
    for line, text in enumerate(body.split("\n"), start=1):
        if not text or text[0] == "#":
            continue
        try:
            point = plain_point(text, line)
            if point is None:
                start = blanks_end(text, 0)
                if start >= len(text) or text[start] == "#":
                    continue  # blanks only, or a comment after blanks
                point, _end = parse_point(text, start, line)
            check_time(point, precision)
            points.append(point)
        except LineError as error:
            errors.append((line, str(error), text.lstrip(" \t\0")))
    if errors:
        raise BadRequest(error_message(errors))
    return points


def parse_any(body: str, precision: str) -> list[Point]:
    """Any body, strings spanning lines and escapes included."""
    points, errors = [], []
    pos, line, size = 0, 1, len(body)
    while pos < size:
        pos = blanks_end(body, pos)
        if pos >= size:
            break
        char = body[pos]
        if char == "\n" or char == "#":
            end = body.find("\n", pos)
            pos = size if end < 0 else end + 1
            line += 1
            continue
        start = pos
        try:
            point, pos = parse_point(body, pos, line)
            check_time(point, precision)
            points.append(point)
        except LineError as error:
            end = body.find("\n", start)
            pos = size if end < 0 else end
            errors.append((line, str(error), body[start:pos]))
        line += body.count("\n", start, pos) + (pos < size)
        pos += 1
    if errors:
        raise BadRequest(error_message(errors))
    return points


def error_message(errors: list[tuple[int, str, str]]) -> str:
    """What is wrong with the first few bad lines, each by its line number."""
    parts = [
        f"line {line}: {reason} in {clip(text)!r}"
        for line, reason, text in errors[:MAX_REPORTED]
    ]
    more = len(errors) - MAX_REPORTED
    if more > 0:
        parts.append(f"and {more} more bad lines")
    return "unable to parse the line protocol: " + "; ".join(parts)


def clip(text: str, length: int = 60) -> str:
    """A line for an error message, cut to ``length`` characters."""
    return text if len(text) <= length else text[: length - 1] + "…"

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

One divergence on purpose: a backslash always escapes the character after it here
(``a\\\\,b`` is ``a\\\\`` then a separator), which InfluxDB's own scanners do not
agree on among themselves. Pure: no Flask, no database.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from co2logserver.errors import BadRequest

#: Nanoseconds per unit of each precision InfluxDB 1.x (``n``…``h``) and 2.x
#: (``ns``, ``us``) name.
PRECISIONS = {
    "n": 1,
    "ns": 1,
    "u": 1_000,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
NANOSECONDS = 1_000_000_000
INT64 = (-(2**63), 2**63 - 1)
#: The times InfluxDB can store, in nanoseconds (its MinNanoTime, MaxNanoTime).
NANO_RANGE = (-(2**63) + 2, 2**63 - 2)
UINT64_MAX = 2**64 - 1
#: How many bad lines one error message lists.
MAX_REPORTED = 5

FieldValue = float | int | str | bool


@dataclass(frozen=True)
class Point:
    """One line: the series (measurement and sorted tags), fields and raw time."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    #: The timestamp as written, in the request's precision; ``None`` without one.
    timestamp: int | None
    #: The line number (1 is the first line of the body) the point was on.
    line: int


class LineError(Exception):
    """One line that is not line protocol; ``str()`` says what is wrong."""


_NAME_CHAR = r"(?:[^\\ ,\n]|\\[^\n])"
_KEY_CHAR = r"(?:[^\\ ,=\n]|\\[^\n])"
MEASUREMENT = re.compile(rf"{_NAME_CHAR}+")
TAG = re.compile(rf",({_KEY_CHAR}+)=({_KEY_CHAR}+)")
BLANKS = re.compile(r"[ \t\0]*")
FIELD_KEY = re.compile(rf"({_KEY_CHAR}+)=")
FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
INTEGER = re.compile(r"(-?\d+)i")
UNSIGNED = re.compile(r"(\d+)u")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
BOOLEAN = re.compile(r"true|True|TRUE|t|T|false|False|FALSE|f|F")
TIMESTAMP = re.compile(r"-?\d+")
#: A whole ``key=value`` field of any type; the group that matched gives the type.
FIELD = re.compile(
    rf"({_KEY_CHAR}+)=(?:"
    r'"((?:[^"\\]|\\.)*)"'  # string
    r"|(-?\d+)i"  # integer
    r"|(\d+)u"  # unsigned
    r"|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"  # float
    r"|(true|True|TRUE|t|T|false|False|FALSE|f|F)"  # boolean
    r")(?=[, \n]|\Z)",
    re.DOTALL,
)
#: What may follow a field value: the next field, the timestamp, the line's end.
VALUE_END = frozenset(", \n")
MEASUREMENT_ESCAPES = re.compile(r'\\([, ="])')
TAG_ESCAPES = re.compile(r"\\([, =])")
STRING_ESCAPES = re.compile(r'\\(["\\])')


KEY_RUN = re.compile(_KEY_CHAR + "*")


def blanks_end(text: str, pos: int) -> int:
    """The position after the blanks (spaces, tabs, NULs) at ``pos``."""
    found = BLANKS.match(text, pos)
    return found.end() if found else pos


def unescape(pattern: re.Pattern, text: str) -> str:
    """``text`` with the escapes ``pattern`` matches replaced by their character."""
    return pattern.sub(r"\1", text) if "\\" in text else text


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


#: A measurement, key or tag value that needs no unescaping or care at all.
PLAIN_TOKEN = re.compile(r"[^\x00-\x20\x7f,=\"\\]+")
PLAIN_BOOLEANS = {
    "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}  # fmt: skip
PLAIN_INTEGER = re.compile(r"-?\d+")


def plain_point(text: str, line: int) -> Point | None:
    """The point of a plain line, or ``None`` when the full parser must decide."""
    parts = text.split(" ")
    if len(parts) not in (2, 3):
        return None
    series = plain_series(parts[0])
    if series is None:
        return None
    fields = {}
    for part in parts[1].split(","):
        key, _, value = part.partition("=")
        if not plain_token(key):
            return None
        number = plain_value(value)
        if number is None:
            return None
        fields[key] = number
    timestamp = None
    if len(parts) == 3:
        if not PLAIN_INTEGER.fullmatch(parts[2]):
            return None
        timestamp = int(parts[2])
        if not INT64[0] <= timestamp <= INT64[1]:
            return None
    return Point(series[0], series[1], tuple(fields.items()), timestamp, line)


@functools.lru_cache(maxsize=4096)
def plain_token(text: str) -> bool:
    """Whether a key is plain (a batch repeats the same few)."""
    return PLAIN_TOKEN.fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)
def plain_series(text: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """Measurement and sorted tags of a plain series key (a batch repeats it)."""
    measurement, *tag_parts = text.split(",")
    if not plain_token(measurement):
        return None
    tags: dict[str, str] = {}
    for part in tag_parts:
        key, _, value = part.partition("=")
        if key in tags or not plain_token(key) or not plain_token(value):
            return None
        tags[key] = value
    return measurement, tuple(sorted(tags.items()))


def plain_value(text: str) -> FieldValue | None:
    """A float, ``i``/``u`` integer or boolean field value, or ``None``."""
    if not text:
        return None
    last = text[-1]
    if last == "i" or last == "u":
        digits = text[:-1]
        if not PLAIN_INTEGER.fullmatch(digits) or (last == "u" and digits[0] == "-"):
            return None
        value = int(digits)
        if last == "i":
            return value if INT64[0] <= value <= INT64[1] else None
        return value if value <= UINT64_MAX else None
    if text in PLAIN_BOOLEANS:
        return PLAIN_BOOLEANS[text]
    if FLOAT.fullmatch(text):
        real = float(text)
        return real if math.isfinite(real) else None
    return None


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


def check_time(point: Point, precision: str) -> None:
    """A timestamp InfluxDB could store in nanoseconds.

    :raise LineError: for one beyond that range in the request's precision.
    """
    if point.timestamp is None:
        return
    nanoseconds = point.timestamp * PRECISIONS[precision]
    if not NANO_RANGE[0] <= nanoseconds <= NANO_RANGE[1]:
        raise LineError(
            f"time {point.timestamp} (precision {precision}) is outside the range "
            "InfluxDB can store"
        )


def parse_point(body: str, pos: int, line: int) -> tuple[Point, int]:
    """The point starting at ``pos`` and the position of its line's end.

    :raise LineError: saying what is wrong with the line.
    """
    found = MEASUREMENT.match(body, pos)
    if found is None:
        raise LineError("missing measurement")
    measurement = unescape(MEASUREMENT_ESCAPES, found.group())
    pos = found.end()
    tags, pos = parse_tags(body, pos)
    if at_end(body, pos):
        raise LineError("missing fields")
    if body[pos] != " ":
        raise LineError("invalid tag format (an unescaped '=' in a tag value)")
    pos = blanks_end(body, pos + 1)
    fields, pos = parse_fields(body, pos)
    pos = blanks_end(body, pos)
    timestamp = None
    found = TIMESTAMP.match(body, pos)
    if found is not None:
        timestamp = int(found.group())
        if not INT64[0] <= timestamp <= INT64[1]:
            raise LineError(f"timestamp {found.group()} is out of range")
        pos = found.end()
        while pos < len(body) and body[pos] == " ":
            pos += 1
    if not at_end(body, pos):
        raise LineError("bad timestamp" if found is None else "point is invalid")
    return Point(measurement, tags, fields, timestamp, line), pos


def at_end(body: str, pos: int) -> bool:
    """Whether ``pos`` is at the end of a line."""
    return pos >= len(body) or body[pos] == "\n"


def parse_tags(body: str, pos: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """The tags after a measurement, sorted by key, and the position after them.

    :raise LineError: for an empty key or value, or a key given twice.
    """
    tags = {}
    while pos < len(body) and body[pos] == ",":
        found = TAG.match(body, pos)
        if found is None:
            raise LineError(tag_problem(body, pos + 1))
        key = unescape(TAG_ESCAPES, found.group(1))
        if key in tags:
            raise LineError(f"duplicate tag {key!r}")
        tags[key] = unescape(TAG_ESCAPES, found.group(2))
        pos = found.end()
    return tuple(sorted(tags.items())), pos


def tag_problem(body: str, pos: int) -> str:
    """Why the tag at ``pos`` does not parse."""
    if at_end(body, pos) or body[pos] in " ,=":
        return "missing tag key"
    key = KEY_RUN.match(body, pos).end()  # type: ignore[union-attr]  # ``*`` always matches
    if at_end(body, key) or body[key] != "=":
        return "missing tag value"
    value = key + 1
    if at_end(body, value) or body[value] in " ,":
        return "missing tag value"
    return "invalid tag format (an unescaped '=' in a tag value)"


def parse_fields(body: str, pos: int) -> tuple[tuple[tuple[str, FieldValue], ...], int]:
    """The fields of a point, in the line's order, and the position after them.

    A key given twice keeps its last value, as InfluxDB does.

    :raise LineError: naming the field that is wrong.
    """
    fields: dict[str, FieldValue] = {}
    size = len(body)
    while True:
        found = FIELD.match(body, pos)
        if found is None:
            key, value, pos = field_problem(body, pos)  # raises for a bad one
        else:
            key, value, pos = field_value(found)
        fields[key] = value
        if pos >= size or body[pos] != ",":
            return tuple(fields.items()), pos
        pos += 1


def field_value(found: re.Match) -> tuple[str, FieldValue, int]:
    """``(key, value, end)`` of a :data:`FIELD` match.

    :raise LineError: for an integer out of its type's range or a float overflow.
    """
    key = found.group(1)
    if "\\" in key:
        key = MEASUREMENT_ESCAPES.sub(r"\1", key)
    text, integer, unsigned, number, boolean = found.group(2, 3, 4, 5, 6)
    if number is not None:
        real = float(number)
        if not math.isfinite(real):
            raise LineError(f"invalid float {number} of {key!r} (out of range)")
        value: FieldValue = real
    elif text is not None:
        value = unescape(STRING_ESCAPES, text)
    elif integer is not None:
        value = int(integer)
        if not INT64[0] <= value <= INT64[1]:
            raise LineError(f"integer {integer}i of {key!r} is out of range")
    elif unsigned is not None:
        value = int(unsigned)
        if value > UINT64_MAX:
            raise LineError(f"unsigned {unsigned}u of {key!r} is out of range")
    else:
        value = boolean[0] in "tT"
    return key, value, found.end()


def field_problem(body: str, pos: int) -> tuple[str, FieldValue, int]:
    """Why the field at ``pos`` is not ``key=value``, found the slow way.

    :raise LineError: always, saying what is wrong.
    """
    found = FIELD_KEY.match(body, pos)
    if found is None:
        raise LineError(field_key_problem(body, pos))
    key = unescape(MEASUREMENT_ESCAPES, found.group(1))
    value, end = parse_value(body, found.end(), key)
    return key, value, end


def field_key_problem(body: str, pos: int) -> str:
    """Why there is no ``key=`` at ``pos``."""
    if at_end(body, pos) or body[pos] == " ":
        return "invalid field format (missing fields)"
    if body[pos] in "=,":
        return "missing field key"
    return "invalid field format (a field without '=value')"


def parse_value(body: str, pos: int, key: str) -> tuple[FieldValue, int]:
    """The value of field ``key`` at ``pos`` and the position after it.

    :raise LineError: for a missing or malformed value, naming the field.
    """
    if at_end(body, pos) or body[pos] in " ,":
        raise LineError(f"missing field value of {key!r}")
    char = body[pos]
    if char == '"':
        found = STRING.match(body, pos)
        if found is None:
            raise LineError(f"unbalanced quotes in field {key!r}")
        return ended(body, unescape(STRING_ESCAPES, found.group(1)), found, key)
    if char in "tTfF":
        found = BOOLEAN.match(body, pos)
        if found is None or not value_ends(body, found.end()):
            raise LineError(f"invalid boolean in field {key!r}")
        return found.group()[0] in "tT", found.end()
    if char not in "-.0123456789":
        raise LineError(
            f'invalid field value of {key!r} (a number, a "string", true or false)'
        )
    return parse_number(body, pos, key)


def value_ends(body: str, pos: int) -> bool:
    """Whether a field value may end at ``pos``."""
    return pos >= len(body) or body[pos] in VALUE_END


def ended(body: str, value: FieldValue, found: re.Match, key: str):
    """``(value, end)`` when the value is followed by what may follow one.

    :raise LineError: otherwise, naming the field.
    """
    if not value_ends(body, found.end()):
        raise LineError(f"invalid field value of {key!r}")
    return value, found.end()


def parse_number(body: str, pos: int, key: str) -> tuple[FieldValue, int]:
    """A float, ``…i`` integer or ``…u`` unsigned field value.

    :raise LineError: for a malformed or out-of-range number, naming the field.
    """
    for pattern, kind in ((INTEGER, "integer"), (UNSIGNED, "unsigned")):
        found = pattern.match(body, pos)
        if found is not None and value_ends(body, found.end()):
            number = int(found.group(1))
            low, high = INT64 if kind == "integer" else (0, UINT64_MAX)
            if not low <= number <= high:
                raise LineError(f"{kind} {found.group()} of {key!r} is out of range")
            return number, found.end()
    found = FLOAT.match(body, pos)
    if found is None or not value_ends(body, found.end()):
        raise LineError(f"invalid number in field {key!r}")
    real = float(found.group())
    if not math.isfinite(real):
        raise LineError(f"invalid float {found.group()} of {key!r} (out of range)")
    return real, found.end()


def seconds(timestamp: int, precision: str) -> int:
    """A timestamp in ``precision`` as whole UNIX seconds (rounded down)."""
    return timestamp * PRECISIONS[precision] // NANOSECONDS


MEASUREMENT_SPECIAL = re.compile(r"([, ])")
TAG_SPECIAL = re.compile(r"([, =])")


def series_key(point: Point) -> str:
    """The series as InfluxDB prints it: ``measurement,tag=value`` escaped."""
    return escaped_key(point.measurement, point.tags)


@functools.lru_cache(maxsize=4096)
def escaped_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """:func:`series_key` of a measurement and its sorted tags (a batch repeats
    the same few series, so each is escaped once)."""
    name = MEASUREMENT_SPECIAL.sub(r"\\\1", measurement)
    return name + "".join(
        f",{escape_tag(key)}={escape_tag(value)}" for key, value in tags
    )


def escape_tag(text: str) -> str:
    """A tag key or value with ``,`` ``=`` and space escaped."""
    return TAG_SPECIAL.sub(r"\\\1", text)

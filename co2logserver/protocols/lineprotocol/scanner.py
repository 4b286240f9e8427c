"""The full line-protocol scanner: any line, escapes and multi-line strings.

It walks a body position by position with the token patterns below, by the rules
of the package docstring, and says exactly what is wrong with a line that does
not parse (:class:`~.points.LineError`). The plain path hands it every line it is
not sure of, so this is the one place the error wording lives.
"""

from __future__ import annotations

import math
import re

from co2logserver.protocols.lineprotocol.points import (
    INT64,
    UINT64_MAX,
    FieldValue,
    LineError,
    Point,
)

_NAME_CHAR = r"(?:[^\\ ,\n]|\\[^\n])"
_KEY_CHAR = r"(?:[^\\ ,=\n]|\\[^\n])"
MEASUREMENT = re.compile(rf"{_NAME_CHAR}+")
TAG = re.compile(rf",({_KEY_CHAR}+)=({_KEY_CHAR}+)")
BLANKS = re.compile(r"[ \t\0]*")
FIELD_KEY = re.compile(rf"({_KEY_CHAR}+)=")
FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
INTEGER = re.compile(r"(-?\d+)i", re.ASCII)
UNSIGNED = re.compile(r"(\d+)u", re.ASCII)
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
BOOLEAN = re.compile(r"true|True|TRUE|t|T|false|False|FALSE|f|F")
TIMESTAMP = re.compile(r"-?\d+", re.ASCII)
#: A whole ``key=value`` field of any type; the group that matched gives the type.
FIELD = re.compile(
    rf"({_KEY_CHAR}+)=(?:"
    r'"((?:[^"\\]|\\.)*)"'  # string
    r"|(-?\d+)i"  # integer
    r"|(\d+)u"  # unsigned
    r"|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"  # float
    r"|(true|True|TRUE|t|T|false|False|FALSE|f|F)"  # boolean
    r")(?=[, \n]|\Z)",
    re.DOTALL | re.ASCII,  # InfluxDB's digits are 0-9 only
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

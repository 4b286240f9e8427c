"""The fast path: plain lines (no strings, no escapes) split instead of scanned.

Telegraf's and Tasmota's batches are all such lines, so this is what a typical
write costs. It accepts only what it is sure of and returns ``None`` for anything
else, which then goes to the full scanner: the two never disagree on a point
(``tests/test_lineprotocol.py`` checks it).
"""

from __future__ import annotations

import functools
import math
import re

from co2logserver.protocols.lineprotocol.points import (
    INT64,
    UINT64_MAX,
    FieldValue,
    Point,
)
from co2logserver.protocols.lineprotocol.scanner import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    UNSIGNED,
)

#: A measurement, key or tag value that needs no unescaping or care at all.
PLAIN_TOKEN_TEXT = r"[^\x00-\x20\x7f,=\"\\]+"
PLAIN_TOKEN = re.compile(PLAIN_TOKEN_TEXT)
PLAIN_BOOLEANS = {
    "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}  # fmt: skip
PLAIN_INTEGER = re.compile(r"-?\d+", re.ASCII)


#: A field section of plain keys and numbers or booleans, checked in one match so
#: that each value is then converted without a pattern of its own. The values are
#: the full scanner's own patterns.
PLAIN_VALUE = "|".join(p.pattern for p in (FLOAT, INTEGER, UNSIGNED, BOOLEAN))
PLAIN_FIELD = rf"{PLAIN_TOKEN_TEXT}=(?:{PLAIN_VALUE})"
PLAIN_FIELDS = re.compile(rf"{PLAIN_FIELD}(?:,{PLAIN_FIELD})*", re.ASCII)


def plain_point(text: str, line: int) -> Point | None:
    """The point of a plain line, or ``None`` when the full parser must decide."""
    parts = text.split(" ")
    count = len(parts)
    if count != 2 and count != 3:
        return None
    series = plain_series(parts[0])
    if series is None or not PLAIN_FIELDS.fullmatch(parts[1]):
        return None
    fields = {}
    for part in parts[1].split(","):
        key, _, value = part.partition("=")
        number = plain_value(value)
        if number is None:
            return None
        fields[key] = number
    timestamp = None
    if count == 3:
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
    """The value of a field that :data:`PLAIN_FIELDS` matched, or ``None``.

    ``None`` for an integer beyond its 64 bits or a float beyond a double: the
    full parser then words the error.
    """
    last = text[-1]
    if last == "i":
        value = int(text[:-1])
        return value if INT64[0] <= value <= INT64[1] else None
    if last == "u":
        value = int(text[:-1])
        return value if value <= UINT64_MAX else None
    boolean = PLAIN_BOOLEANS.get(text)
    if boolean is not None:
        return boolean
    real = float(text)
    return real if math.isfinite(real) else None

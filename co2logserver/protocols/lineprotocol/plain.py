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
from co2logserver.protocols.lineprotocol.scanner import FLOAT

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

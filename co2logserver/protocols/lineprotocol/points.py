"""What a line of line protocol becomes: a point, its time and its series key.

The shapes and numeric limits every other part of the parser shares (the
:class:`Point`, the precisions, InfluxDB's integer and time ranges), and the way
back from a point to the series key and UNIX seconds the influx protocol stores.
Imports nothing of the parser, so the scanner and the plain path both build on it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

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

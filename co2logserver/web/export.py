"""Render download results as CSV (streamed), JSON or HTML. Knows nothing of SQL."""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


def json_default(value: Any) -> Any:
    """Datetimes and other values JSON lacks are written as text."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def rows_as_json(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A JSON list of row objects, as 0.1.2's download gave."""
    return json.dumps(
        [dict(zip(header, row, strict=False)) for row in rows],
        default=json_default,
        separators=(",", ":"),
    )


def stream_csv(
    header: Sequence[str], rows: Iterable[Sequence], chunk_rows: int = 5000
) -> Iterator[str]:
    """Yield CSV text in chunks of ``chunk_rows`` rows, header first.

    ``csv.writer`` writes a missing value as an empty cell and a datetime as
    ``isoformat(" ")``, the text the JSON download gives, so whole chunks go to
    ``writerows`` in C without a per-value pass in Python.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    rows = iter(rows)
    while True:
        writer.writerows(itertools.islice(rows, chunk_rows))
        text = buffer.getvalue()
        if not text:
            break
        yield text
        buffer.seek(0)
        buffer.truncate()

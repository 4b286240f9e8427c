"""Render download results as CSV (streamed), JSON or HTML. Knows nothing of SQL."""

from __future__ import annotations

import csv
import datetime
import io
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


def csv_cell(value: Any) -> Any:
    """Times in the same text as JSON; missing values as empty cells."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return value


def stream_csv(
    header: Sequence[str], rows: Iterable[Sequence], chunk_rows: int = 1000
) -> Iterator[str]:
    """Yield CSV text in chunks of ``chunk_rows`` rows, header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    pending = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        pending += 1
        if pending >= chunk_rows:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()

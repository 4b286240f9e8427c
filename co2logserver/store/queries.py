"""Download queries on the legacy data table: whitelisted columns, filters, order.

Every column a client names is checked against the reflected table first, so a
wrong name is a 400 that says which names exist, never an SQL error.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, column, select, table

from co2logserver.errors import BadRequest
from co2logserver.parsers import coerce_number
from co2logserver.store import Store
from co2logserver.store.columns import Columns
from co2logserver.store.prepared import driver_cursor
from co2logserver.utils import utc_datetime_from_unix_timestamp

FORMATS = ("html", "csv", "json")


@dataclass
class DownloadQuery:
    """What a ``GET /download`` asks for, checked against the table."""

    format: str = "html"
    columns: list[str] = field(default_factory=list)
    limit: int = 1000
    minimum: dict[str, Any] = field(default_factory=dict)
    maximum: dict[str, Any] = field(default_factory=dict)
    order_by: tuple[str, str] | None = None


def current_columns(store: Store) -> Columns:
    """Reflect the data table: another worker may have added columns."""
    with store.reading() as conn:
        return store.data.reflect(conn)


def parse_download_args(
    args: Mapping[str, str], columns: Columns, max_rows: int
) -> DownloadQuery:
    """Read the 0.1.2 download parameters.

    :raise BadRequest: for an unknown format, column or direction, or a bad number.
    """
    query = DownloadQuery(limit=max_rows)
    query.format = args.get("format", "html").lower()
    if query.format not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    wanted = [c.strip() for c in args.get("cols", "").split(",") if c.strip()]
    query.columns = [known_column(c, columns, "cols") for c in wanted]
    query.limit = parse_limit(args.get("number"), max_rows)
    for key, value in args.items():
        bound, _, name = key.partition("_")
        if bound in ("min", "max") and name and value != "":
            actual = known_column(name, columns, key)
            target = query.minimum if bound == "min" else query.maximum
            target[actual] = filter_value(value, columns.kind(actual), key)
    if args.get("order_by"):
        query.order_by = parse_order(args["order_by"], columns)
    return query


def known_column(name: str, columns: Columns, parameter: str) -> str:
    """Return the table's spelling of ``name``.

    :raise BadRequest: naming the parameter and the columns that exist.
    """
    if name not in columns:
        raise BadRequest(
            f"{parameter}: there is no column {name[:64]!r}; columns are "
            + ", ".join(columns.names())
        )
    return columns.actual(name)


def parse_limit(text: str | None, max_rows: int) -> int:
    """``number`` is capped by ``CO2LOGSERVER_MAX_LIMIT_OF_ROWS``."""
    if text in (None, ""):
        return max_rows
    if not text.isdigit():
        raise BadRequest(f"number must be a whole number, not {text[:32]!r}")
    return min(int(text), max_rows)


def parse_order(text: str, columns: Columns) -> tuple[str, str]:
    """``order_by=<col>,asc|desc`` (the direction defaults to asc)."""
    name, _, direction = text.partition(",")
    direction = (direction or "asc").strip().lower()
    if direction not in ("asc", "desc"):
        raise BadRequest("order_by must look like <column>,asc or <column>,desc")
    return known_column(name.strip(), columns, "order_by"), direction


def filter_value(text: str, kind: str, parameter: str = "value") -> Any:
    """A filter bound as the column compares it; times may be UNIX seconds.

    :raise BadRequest: naming ``parameter`` (e.g. ``min_co2``) and its value.
    """
    value = coerce_number(text)
    if kind == "datetime":
        try:
            if isinstance(value, (int, float)):
                return utc_datetime_from_unix_timestamp(value)
            return datetime.datetime.fromisoformat(text)
        except (ValueError, OverflowError):  # 1e100 seconds overflow a datetime
            raise BadRequest(
                f"{parameter}: {text[:32]!r} is not a time: use UNIX seconds or "
                "ISO 8601"
            ) from None
    if kind in ("int", "float") and isinstance(value, str):
        raise BadRequest(f"{parameter}: {text[:32]!r} is not a number")
    return value


def build_select(store: Store, query: DownloadQuery) -> tuple[list[str], Select]:
    """The SELECT for ``query``; returns the header and the statement."""
    names = query.columns or store.data.columns.names()
    data = table(store.data.name, *(column(n) for n in store.data.columns.names()))
    statement = select(*(data.c[n] for n in names))
    sqlite = store.dialect == "sqlite"
    for name, value in query.minimum.items():
        statement = statement.where(data.c[name] >= bound(value, sqlite))
    for name, value in query.maximum.items():
        statement = statement.where(data.c[name] <= bound(value, sqlite))
    if query.order_by:
        name, direction = query.order_by
        order = data.c[name].desc() if direction == "desc" else data.c[name].asc()
        statement = statement.order_by(order)
    return names, statement.limit(query.limit)


def bound(value: Any, sqlite: bool) -> Any:
    """SQLite keeps times as ISO text, so compare them as text there."""
    if sqlite and isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return value


def stream_download(store: Store, query: DownloadQuery) -> tuple[list[str], Iterator]:
    """Return the header and an iterator of rows that holds its own connection.

    :raise StorageUnavailable: when the database cannot be reached.
    """
    names, statement = build_select(store, query)

    def rows() -> Iterator[Sequence]:
        with store.reading() as conn:
            yield from itertools.chain.from_iterable(fetch_chunks(conn, statement))

    return names, rows()


def fetch_chunks(
    conn: Connection, statement: Select, size: int = 5000
) -> Iterator[Sequence[Sequence]]:
    """The rows of ``statement`` in lists of ``size``, never all at once.

    The data table's columns are untyped here (no result processing), so on SQLite
    the driver's cursor hands out its tuples directly: an export of a million rows
    spends its time writing them, not wrapping each in a Row. PostgreSQL streams
    through a server-side cursor.
    """
    if conn.dialect.name != "sqlite":
        result = conn.execution_options(stream_results=True, yield_per=size)
        yield from result.execute(statement).partitions()
        return
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    with driver_cursor(conn) as cursor:
        # SQLite's qmark style is positional, so positiontup is always set.
        order = compiled.positiontup
        cursor.execute(compiled.string, [params[k] for k in order])  # type: ignore[union-attr]
        while chunk := cursor.fetchmany(size):
            yield chunk

"""The legacy ``data`` table: reflect it, grow it, check values against it, insert.

Columns are compared case-insensitively with the reflected table before every write
that brings a new name (never by reading database error texts), and added inside the
writer's transaction, so concurrent workers cannot add one twice.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from sqlalchemy import Connection, inspect, types

from co2logserver.errors import BadRequest
from co2logserver.store import counters, doubt
from co2logserver.store.prepared import driver_execute_many, placeholders

INT64 = 2**63

#: Declared column types per kind, as 0.1.2 wrote them on SQLite.
SQL_TYPES = {
    "sqlite": {
        "int": "INTEGER",
        "float": "REAL",
        "text": "TEXT",
        "datetime": "DATETIME",
    },
    "postgresql": {
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "text": "TEXT",
        "datetime": "TIMESTAMP WITH TIME ZONE",
    },
}


def kind_of_type(sql_type: types.TypeEngine) -> str:
    """Classify a reflected column type as int, float, text, datetime or any."""
    if isinstance(sql_type, types.Integer):
        return "int"
    if isinstance(sql_type, (types.Float, types.Numeric)):
        return "float"
    if isinstance(sql_type, (types.DateTime, types.Date)):
        return "datetime"
    if isinstance(sql_type, (types.String, types.Text)):
        return "text"
    return "any"  # e.g. 0.1.2's columns declared "NULL"


def kind_of_value(value: Any) -> str | None:
    """Classify one value; ``None`` has no kind."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "text"


def suggest_column_type(values: Iterable[Any]) -> str:
    """Suggest the kind of a new column from all values it receives.

    Integers and floats make a float column, any text makes a text column, and a
    column of only missing values is text.
    """
    kinds = {kind for kind in map(kind_of_value, values) if kind is not None}
    if not kinds:
        return "text"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"int", "float"}:
        return "float"
    return "text"


@dataclass
class Columns:
    """The reflected columns: lowercase name -> (actual name, kind)."""

    by_lower: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.by_lower

    def kind(self, name: str) -> str:
        """Kind of an existing column."""
        return self.by_lower[name.lower()][1]

    def actual(self, name: str) -> str:
        """Name as the table spells it."""
        return self.by_lower[name.lower()][0]

    def names(self) -> list[str]:
        """Actual names in table order."""
        return [actual for actual, _kind in self.by_lower.values()]


class DataTable:
    """The legacy data table of one database."""

    def __init__(self, name: str, settings: Mapping[str, Any]):
        self.name = name
        self.upload_time_column = settings["CO2LOGSERVER_UPLOAD_TIME_COL"]
        self.automatic = {
            settings["CO2LOGSERVER_UPLOAD_TIME_COL"]: "datetime",
            settings["CO2LOGSERVER_MATCHED_CHECKSUMS_COL"]: "text",
            settings["CO2LOGSERVER_FAILED_CHECKSUMS_COL"]: "text",
        }
        self.max_new = settings["CO2LOGSERVER_MAX_NEW_COLUMNS"]
        self.max_columns = settings["CO2LOGSERVER_MAX_COLUMNS"]
        self.columns = Columns()
        self._altered = False  # DDL ran in the current write transaction
        self._inserts: dict[tuple, str] = {}

    def ensure(self, conn: Connection) -> None:
        """Create the table as 0.1.2 did when it is missing, then reflect it."""
        if not inspect(conn).has_table(self.name):
            types_ = SQL_TYPES[conn.dialect.name]
            quote = conn.dialect.identifier_preparer.quote
            fields = ", ".join(
                f"{quote(name)} {types_[kind]}" for name, kind in self.automatic.items()
            )
            conn.exec_driver_sql(f"CREATE TABLE {quote(self.name)} ({fields})")
        self.reflect(conn)

    def reflect(self, conn: Connection) -> Columns:
        """Read the table's columns from the database."""
        self.columns = Columns(
            {
                info["name"].lower(): (info["name"], kind_of_type(info["type"]))
                for info in inspect(conn).get_columns(self.name)
            }
        )
        return self.columns

    def settled(self, committed: bool) -> None:
        """End of a write transaction: forget columns that a rollback undid.

        Only a transaction that ran DDL can leave the cache ahead of the database,
        so a refused request without DDL costs no reflection afterwards.
        """
        if self._altered and not committed:
            self.columns = Columns()  # the next write reflects the table afresh
        self._altered = False

    def savepoint_rolled_back(self) -> None:
        """A savepoint of a shared transaction rolled back: reflect afresh if it
        may have undone DDL (the transaction itself may still commit)."""
        if self._altered:
            self.columns = Columns()

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Names the table (as last reflected) does not have."""
        return [name for name in names if name not in self.columns]

    def add_missing_columns(
        self,
        conn: Connection,
        columns: Mapping[str, list[Any]],
        automatic: Mapping[str, Any],
    ) -> None:
        """Add the columns the table lacks, typed by their values.

        Runs inside the writer's transaction; the table is reflected again first so
        a column another worker just added is not added twice.

        :raise BadRequest: when the upload would pass the column caps.
        """
        values = {**columns, **{name: [v] for name, v in automatic.items()}}
        missing = self.unknown(values)
        if missing:
            missing = [name for name in missing if name not in self.reflect(conn)]
        if not missing:
            return
        if len(missing) > self.max_new:
            raise BadRequest(
                f"The upload adds {len(missing)} new columns; at most {self.max_new} "
                "may be added per upload (CO2LOGSERVER_MAX_NEW_COLUMNS)"
            )
        if len(self.columns.by_lower) + len(missing) > self.max_columns:
            raise BadRequest(
                f"The data table may have at most {self.max_columns} columns "
                "(CO2LOGSERVER_MAX_COLUMNS); ask the operator to raise the limit"
            )
        types_ = SQL_TYPES[conn.dialect.name]
        quote = conn.dialect.identifier_preparer.quote
        exists = " IF NOT EXISTS" if conn.dialect.name == "postgresql" else ""
        for name in missing:
            kind = suggest_column_type(values[name])
            conn.exec_driver_sql(
                f"ALTER TABLE {quote(self.name)} ADD COLUMN{exists} "
                f"{quote(name)} {types_[kind]}"
            )
        self._altered = True
        self.reflect(conn)

    def fit_column(self, conn: Connection, name: str, values: list) -> list:
        """Check a column's values against its kind and adapt them for the driver.

        Numbers are stored into text columns as their text; a value that the column
        cannot hold unchanged is a 400 naming row and column.

        :raise BadRequest: listing every value that does not fit.
        """
        kind = self.columns.kind(name)
        sqlite = conn.dialect.name == "sqlite"
        types = set(map(type, values)) - {type(None)}
        if kind == "float" and int in types:
            refuse_inexact_floats(name, values)
        if types <= UNCHANGED.get((kind, sqlite), UNCHANGED_ANY_DIALECT[kind]):
            return values
        if sqlite and types == {datetime.datetime} and kind in AS_SQLITE_TEXT:
            # A time column of a batch: the text 0.1.2 stored, in one pass.
            return [None if v is None else v.isoformat(sep=" ") for v in values]
        fitted = [fit_value(value, kind, sqlite) for value in values]
        errors = [
            refusal(index, name, value, kind)
            for index, (value, fit) in enumerate(zip(values, fitted, strict=True))
            if fit is _REFUSED
        ]
        if errors:
            raise BadRequest("; ".join(errors[:20]))
        if any(fit is _WIDEN for fit in fitted):
            self.widen_to_float(conn, name)
            return values
        return fitted

    def widen_to_float(self, conn: Connection, name: str) -> None:
        """Let a PostgreSQL integer column hold fractions (SQLite needs no change)."""
        quote = conn.dialect.identifier_preparer.quote
        target = quote(self.columns.actual(name))
        conn.exec_driver_sql(
            f"ALTER TABLE {quote(self.name)} ALTER COLUMN {target} "
            "TYPE DOUBLE PRECISION"
        )
        self._altered = True
        self.reflect(conn)

    def insert(self, conn: Connection, batch, automatic: Mapping[str, Any]) -> int:
        """Insert a checked batch plus the per-upload ``automatic`` values.

        Returns how many rows were stored; the dashboard's upload counters
        (:mod:`co2logserver.store.counters`) count them in the same transaction.
        """
        names = sorted(batch.columns)
        columns = [self.fit_column(conn, n, batch.columns[n]) for n in names]
        constants = [
            self.fit_column(conn, n, [value])[0] for n, value in automatic.items()
        ]
        actual = tuple(self.columns.actual(n) for n in [*names, *automatic])
        params = list(
            zip(*columns, *map(repeat, constants), strict=False)
            if columns
            else repeat(tuple(constants), batch.length)
        )
        driver_execute_many(conn, self.insert_sql(conn, actual), params)
        doubt.keyless_rows_written(conn)  # no key: a second apply would store twice
        uploaded = automatic.get(self.upload_time_column)
        counters.record_upload(conn, len(params), uploaded)
        return len(params)

    def insert_sql(self, conn: Connection, columns: tuple[str, ...]) -> str:
        """The INSERT for a set of columns, built once (uploads repeat their shape)."""
        key = (conn.dialect.name, columns)
        sql = self._inserts.get(key)
        if sql is None:
            quote = conn.dialect.identifier_preparer.quote
            sql = (
                f"INSERT INTO {quote(self.name)} ({', '.join(map(quote, columns))}) "
                f"VALUES ({placeholders(conn, len(columns))})"
            )
            if len(self._inserts) > 1000:
                self._inserts.clear()
            self._inserts[key] = sql
        return sql


#: Value types a column kind stores as they are: (kind, sqlite) -> types.
UNCHANGED: dict[tuple[str, bool], set[type]] = {
    ("int", True): {int, float},
    ("int", False): {int},
    ("datetime", False): {datetime.datetime},
    ("any", False): {int, float, str},
}
UNCHANGED_ANY_DIALECT: dict[str, set[type]] = {
    "int": {int},
    "float": {int, float},
    "text": {str},
    "datetime": set(),
    "any": {int, float, str},
}


#: Column kinds that SQLite stores a datetime into as its ISO text (see fit_value).
AS_SQLITE_TEXT = frozenset({"datetime", "text", "any"})

_WIDEN = object()
_REFUSED = object()


#: Integers beyond this lose digits as a double (9007199254740993 -> ...992.0).
EXACT_FLOAT_INT = 2**53


def refuse_inexact_floats(name: str, values: list) -> None:
    """A float column cannot hold an integer beyond 2**53 unchanged: refuse it.

    :raise BadRequest: naming row and column.
    """
    errors = [
        f"row {index}: column {name!r}: {value} cannot be stored exactly in a "
        "floating-point column (integers up to 2**53 can)"
        for index, value in enumerate(values)
        if type(value) is int and abs(value) > EXACT_FLOAT_INT
    ]
    if errors:
        raise BadRequest("; ".join(errors[:20]))


def fit_value(value: Any, kind: str, sqlite: bool) -> Any:
    """Return ``value`` as the column of ``kind`` stores it, or a marker."""
    value_kind = kind_of_value(value)
    if value_kind is None or kind == "any":
        return to_sqlite_text(value) if sqlite else value
    if kind == value_kind:
        return to_sqlite_text(value) if sqlite else value
    if kind == "float" and value_kind == "int":
        return value
    if kind == "int" and value_kind == "float":
        if sqlite or value.is_integer():
            return value
        return _WIDEN
    if kind == "text" and value_kind in ("int", "float"):
        return repr(value)
    if kind == "text" and value_kind == "datetime":
        return value.isoformat(sep=" ")
    return _REFUSED


def to_sqlite_text(value: Any) -> Any:
    """Datetimes are stored as 0.1.2 stored them: ISO text with a space."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return value


def refusal(index: int, name: str, value: Any, kind: str) -> str:
    """Say which value does not fit which column."""
    holds = {"int": "numbers", "float": "numbers", "datetime": "times"}.get(kind, kind)
    return (
        f"row {index}: column {name!r} holds {holds}, "
        f"it cannot store {short_repr(value)}"
    )


def short_repr(value: Any) -> str:
    """A value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text_problem(text: str) -> str | None:
    """Why text cannot be stored unchanged on every backend, or ``None``.

    PostgreSQL refuses NUL characters and no driver can encode an unpaired UTF-16
    surrogate (``"\\ud800"`` in JSON): both are refused everywhere, so a value
    stores the same on SQLite and PostgreSQL or not at all.
    """
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired surrogate (not valid Unicode)"
    return None


def check_scalar(value: Any) -> str | None:
    """Return why a value cannot be stored in a column, or ``None``."""
    if isinstance(value, str):
        return text_problem(value)
    if value is None or isinstance(value, datetime.datetime):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else "is out of the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    return f"is a {type(value).__name__}, not a number or text"

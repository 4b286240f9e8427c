"""Checks of a whole legacy upload: column names, values and time columns.

The rules a ``Batch`` must meet before anything of it is stored, kept apart from
:mod:`co2logserver.ingest` (which decides what is written, and when) so that each
rule has one owner and can be tested without a database. Every problem is named
with its row; the caller raises them together. No Flask, no SQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from co2logserver.errors import raise_errors
from co2logserver.parsers import Batch
from co2logserver.store.columns import INT64, check_scalar, short_repr, text_problem

COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Value types a column may hold (ints in range, floats finite).
PLAIN_TYPES = {int, float, str, type(None)}


def normalise(batch: Batch, settings: Mapping) -> Batch:
    """Lowercase and check column names and values; convert time columns.

    :raise BadRequest: listing every bad column name and value with its row.
    """
    errors: list[str] = []
    time_columns = {c.lower() for c in settings["CO2LOGSERVER_TIME_COLS"]}
    converter = settings["CO2LOGSERVER_TIME_CONVERTER"]
    columns: dict[str, list[Any]] = {}
    for name, values in batch.columns.items():
        column = name.strip().lower()
        if not COLUMN_NAME.fullmatch(column):
            errors.append(
                f"column name {short_repr(name)} is invalid; use letters, digits "
                "and _ (not first a digit), at most 63 characters"
            )
            continue
        values = checked_values(column, values, errors)
        if column in time_columns:
            values = converted_times(converter, column, values, errors)
        if column in columns:
            values = merged(columns[column], values, column, errors)
        columns[column] = values
    raise_errors(errors)
    return Batch(columns, batch.length)


def checked_values(column: str, values: list, errors: list[str]) -> list:
    """Check a column's values; booleans become 0 and 1.

    The common case (numbers in range, text, gaps) is decided per type for the
    whole column; only a column with a bad value is looked at value by value.
    """
    types = set(map(type, values))
    if types <= PLAIN_TYPES and plain_values_fine(values, types):
        return values
    for index, value in enumerate(values):
        problem = check_scalar(value)
        if problem:
            errors.append(f"row {index}: column {column!r}: value {problem}")
    if bool in types:
        values = [int(v) if type(v) is bool else v for v in values]
    return values


def plain_values_fine(values: list, types: set) -> bool:
    """Whether ints lie in the 64-bit range and floats are finite."""
    if int in types:
        ints = [v for v in values if type(v) is int]
        if max(ints) >= INT64 or min(ints) < -INT64:
            return False
    if str in types and any(text_problem(v) for v in values if type(v) is str):
        return False
    if float in types:
        return all(math.isfinite(v) for v in values if type(v) is float)
    return True


def converted_times(converter, column: str, values: list, errors: list[str]) -> list:
    """Apply ``CO2LOGSERVER_TIME_CONVERTER``; a value it cannot convert is an error."""
    converted = []
    for index, value in enumerate(values):
        try:
            converted.append(None if value is None else converter(value, column))
        except Exception:  # the converter is the operator's code: any failure is a 400
            errors.append(
                f"row {index}: column {column!r}: {short_repr(value)} is not a time "
                "the server can convert (UNIX seconds expected)"
            )
            converted.append(None)
    return converted


def merged(first: list, second: list, column: str, errors: list[str]) -> list:
    """Join two spellings of one column (``CO2`` and ``co2``) row by row."""
    result = list(first)
    for index, value in enumerate(second):
        if value is None:
            continue
        if result[index] is not None:
            errors.append(f"row {index}: column {column!r} is given twice")
        result[index] = value
    return result

"""Column type suggestion and value fitting, as tables of cases."""

from __future__ import annotations

import datetime

import pytest

from co2logserver.store.columns import (
    _REFUSED,
    _WIDEN,
    check_scalar,
    fit_value,
    suggest_column_type,
)

NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2], "int"),
        ([1, 2.5], "float"),
        ([1.5], "float"),
        (["a", 1], "text"),
        ([None, 3], "int"),
        ([None], "text"),
        ([], "text"),
        ([NOW], "datetime"),
        ([NOW, 1], "text"),
    ],
)
def test_suggest_column_type(values, kind):
    assert suggest_column_type(values) == kind


@pytest.mark.parametrize(
    ("value", "kind", "sqlite", "stored"),
    [
        (1, "int", True, 1),
        (1.5, "int", True, 1.5),
        (2.0, "int", False, 2.0),
        (1.5, "int", False, _WIDEN),
        (1, "float", False, 1),
        ("x", "float", True, _REFUSED),
        ("x", "int", False, _REFUSED),
        (1, "text", True, "1"),
        (0.1, "text", False, "0.1"),
        (NOW, "text", False, "2024-01-02 03:04:05+00:00"),
        (NOW, "datetime", True, "2024-01-02 03:04:05+00:00"),
        (NOW, "datetime", False, NOW),
        ("soon", "datetime", True, _REFUSED),
        (None, "int", False, None),
        ("x", "any", True, "x"),
    ],
)
def test_fit_value(value, kind, sqlite, stored):
    result = fit_value(value, kind, sqlite)
    if stored is _WIDEN or stored is _REFUSED:
        assert result is stored
    else:
        assert result == stored
        assert type(result) is type(stored)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (2**63 - 1, True),
        (2**63, False),
        (-(2**63), True),
        (float("nan"), False),
        (float("inf"), False),
        (1.5, True),
        ("x", True),
        (None, True),
        (True, True),
        ([1], False),
        ({"a": 1}, False),
    ],
)
def test_check_scalar(value, ok):
    assert (check_scalar(value) is None) is ok


def test_columns_added_by_another_worker_are_seen(make_app, db_path):
    """Two apps on one file: the second sees the first one's new column."""
    first = make_app().test_client()
    second = make_app().test_client()
    first.post("/upload", json={"x": 1})
    second.post("/upload", json={"y": 2})
    assert first.post("/upload", json={"y": 3, "z": "a"}).status_code == 200
    rows = second.get("/download?format=json&cols=x,y,z").get_json()
    assert rows == [
        {"x": 1, "y": None, "z": None},
        {"x": None, "y": 2, "z": None},
        {"x": None, "y": 3, "z": "a"},
    ]

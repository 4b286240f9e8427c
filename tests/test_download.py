"""GET /download: formats, columns, limits, filters, order and refusals."""

from __future__ import annotations

import csv
import hashlib
import io
from urllib.parse import quote

import pytest

from tests.conftest import SEED_SALT


@pytest.fixture
def filled(any_db_app):
    """A client whose data table holds five rows."""
    app = any_db_app()
    client = app.test_client()
    response = client.post(
        "/upload",
        json={
            "time": [1500000000 + 60 * i for i in range(5)],
            "co2": [400, 410, 405, 420, 415],
            "room": ["a", "b", "a", "b", "a"],
        },
    )
    assert response.get_json() == {"saved-in-db": 5}
    return client


def get_json(client, query: str):
    response = client.get(f"/download?format=json&{query}")
    assert response.status_code == 200, response.data
    return response.get_json()


def test_cols_number_and_order(filled):
    assert get_json(filled, "cols=co2&order_by=co2,desc&number=2") == [
        {"co2": 420},
        {"co2": 415},
    ]


def test_min_max_filters(filled):
    rows = get_json(filled, "cols=co2,room&min_co2=405&max_co2=415&order_by=co2,asc")
    assert rows == [
        {"co2": 405, "room": "a"},
        {"co2": 410, "room": "b"},
        {"co2": 415, "room": "a"},
    ]


def test_time_filters_take_unix_seconds(filled):
    rows = get_json(filled, "cols=co2&min_time=1500000120")
    assert [r["co2"] for r in rows] == [405, 420, 415]


def test_number_is_capped(any_db_app):
    client = any_db_app(MAX_LIMIT_OF_ROWS=3).test_client()
    client.post("/upload", json={"x": list(range(10))})
    assert len(get_json(client, "number=100")) == 3
    assert len(get_json(client, "")) == 3


def test_csv_is_an_attachment(filled):
    response = filled.get("/download?format=csv&cols=co2,room")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == {"co2": "400", "room": "a"}
    assert len(rows) == 5


def test_html_is_a_table(filled):
    response = filled.get("/download?cols=co2")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.get_data(as_text=True).count("<td>") == 5


@pytest.mark.parametrize(
    "query",
    [
        "cols=nope",
        "cols=co2;drop table data",
        "order_by=nope,asc",
        "order_by=co2,sideways",
        "min_nope=3",
        "max_co2=abc",
        "number=-1",
        "format=xml",
        "min_time=yesterday",
    ],
)
def test_bad_parameters_are_400_not_sql_errors(filled, query):
    response = filled.get(f"/download?{query}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error
    assert "sqlite" not in error.lower() and "psycopg" not in error.lower()


def test_download_requires_auth_over_full_path(make_app):
    client = make_app(
        DOWNLOAD_REQUIRES_AUTH=True, CHECKSUM_SALTS=[SEED_SALT]
    ).test_client()
    assert client.get("/download?format=json").status_code == 403
    path = "/download?format=json"
    digest = hashlib.sha256((path + SEED_SALT).encode()).hexdigest()
    response = client.get(path, headers={"Content-SHA256-Salted": digest})
    assert response.status_code == 200
    # the path without a query string still carries the "?" (as 0.1.2 hashed it)
    digest = hashlib.md5(("/download?" + SEED_SALT).encode()).hexdigest()
    assert (
        client.get("/download", headers={"Content-MD5-Salted": digest}).status_code
        == 200
    )
    wrong = hashlib.md5((quote("/download?x") + SEED_SALT).encode()).hexdigest()
    assert (
        client.get("/download", headers={"Content-MD5-Salted": wrong}).status_code
        == 403
    )


def test_csv_cells_read_back_as_the_json_download_gives_them(any_db_app):
    """Gaps, times, floats and text with commas and quotes survive the CSV export."""
    client = any_db_app(MAX_LIMIT_OF_ROWS=20000).test_client()
    rows = [
        {"time": 1500000000, "temp": 21.5, "note": 'a, "quoted" note'},
        {"time": 1500000060, "temp": 0.1 + 0.2, "co2": 7},
        {"note": "line\nbreak", "co2": 8},
    ]
    assert client.post("/upload", json=rows).get_json() == {"saved-in-db": 3}
    cols = "time,temp,note,co2"
    as_json = get_json(client, f"cols={cols}")
    response = client.get(f"/download?format=csv&cols={cols}")
    as_csv = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(as_csv) == len(as_json) == 3
    for csv_row, json_row in zip(as_csv, as_json, strict=True):
        for name in cols.split(","):
            value = json_row[name]
            assert csv_row[name] == ("" if value is None else str(value)), name
    assert float(as_csv[1]["temp"]) == 0.1 + 0.2


def test_csv_export_spans_many_chunks_in_order(any_db_app):
    """An export longer than one written chunk loses and repeats no row."""
    client = any_db_app(MAX_LIMIT_OF_ROWS=20000).test_client()
    for start in (0, 6000):
        values = list(range(start, start + 6000))
        assert client.post("/upload", json={"n": values}).status_code == 200
    response = client.get("/download?format=csv&cols=n&number=20000")
    chunks = list(response.response)
    assert len(chunks) > 1
    lines = "".join(
        c.decode() if isinstance(c, bytes) else c for c in chunks
    ).splitlines()
    assert lines[0] == "n"
    assert sorted(int(line) for line in lines[1:]) == list(range(12000))

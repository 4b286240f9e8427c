"""A database file written by co2logserver 0.1.2 opens and keeps working.

``tests/data/co2-0.1.2.sqlite`` was written by co2logserver 0.1.2 itself: the seed
JSON upload with a salted MD5, a CSV upload with ``time`` and ``box`` columns and a
form upload with ``lat``/``lon``.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

LEGACY_DB = Path(__file__).parent / "data" / "co2-0.1.2.sqlite"


@pytest.fixture
def legacy_client(tmp_path, make_app):
    """A client on a copy of the 0.1.2 database."""
    path = tmp_path / "co2.sqlite"
    shutil.copy(LEGACY_DB, path)
    app = make_app(DB=str(path))
    return app.test_client(), path


def test_existing_rows_download(legacy_client):
    client, _path = legacy_client
    rows = client.get("/download?format=json").get_json()
    assert len(rows) == 5
    assert [(r["time_utc"], r["co2"]) for r in rows[:2]] == [(43, 1223), (23, 2351)]
    assert rows[0]["matched_checksums"] == "md5"
    assert rows[2]["time"] == "2017-07-14 02:40:00+00:00"
    assert rows[4]["lat"] == 48.5


def test_new_uploads_append_in_the_same_format(legacy_client):
    client, path = legacy_client
    response = client.post(
        "/upload", json={"time": [1600000000], "co2": [500], "new": [1]}
    )
    assert response.get_json() == {"saved-in-db": 1}
    rows = client.get("/download?format=json").get_json()
    assert len(rows) == 6
    assert rows[-1]["time"] == "2020-09-13 12:26:40+00:00"
    with sqlite3.connect(path) as conn:
        declared = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(data)")}
        upload_times = [r[0] for r in conn.execute("SELECT time_upload_utc FROM data")]
    assert declared["co2"] == "INTEGER"
    assert declared["time"] == "DATETIME"
    assert declared["new"] == "INTEGER"
    # the new row's upload time reads like the old ones: ISO text, space, +00:00
    assert all(
        len(t) >= 25 and t[10] == " " and t.endswith("+00:00") for t in upload_times
    )


def test_filters_on_legacy_columns(legacy_client):
    client, _path = legacy_client
    rows = client.get(
        "/download?format=json&cols=co2,box&min_co2=400&max_co2=405"
    ).get_json()
    assert rows == [{"co2": 400, "box": "kitchen"}, {"co2": 405, "box": "kitchen"}]


def test_index_counts_legacy_rows(legacy_client):
    client, _path = legacy_client
    page = client.get("/").get_data(as_text=True)
    assert ">5<" in page


def test_first_start_logs_one_line_of_what_it_changed(tmp_path, make_app, caplog):
    """WAL and the new tables, said once, on the first start; nothing the next time."""
    path = tmp_path / "co2.sqlite"
    shutil.copy(LEGACY_DB, path)
    with caplog.at_level(logging.INFO, logger="co2logserver"):
        first = make_app(DB=str(path))
        assert first.test_client().get("/download?format=json").status_code == 200
    lines = [r.getMessage() for r in caplog.records if "0.1.2" in r.getMessage()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert str(path) in line
    assert "switched the file from delete to WAL journal mode" in line
    assert "added the tables" in line and "sensors" in line and "outbox" in line
    assert "the data table and its rows are unchanged" in line
    assert [r.levelno for r in caplog.records if "0.1.2" in r.getMessage()] == [
        logging.WARNING  # shown at the default CO2LOGSERVER_LOGLEVEL
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="co2logserver"):
        again = make_app(DB=str(path))
        assert again.test_client().get("/download?format=json").status_code == 200
    assert not [r for r in caplog.records if "0.1.2" in r.getMessage()]


def test_a_new_database_logs_no_upgrade(tmp_path, make_app, caplog):
    with caplog.at_level(logging.INFO, logger="co2logserver"):
        app = make_app(DB=str(tmp_path / "new.sqlite"))
        assert app.test_client().get("/download?format=json").status_code == 200
    assert not [r for r in caplog.records if "0.1.2" in r.getMessage()]

"""Inputs that used to be 500s or silently altered (#11): each a 4xx naming the
problem with nothing stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import time
import uuid

import pytest
from sqlalchemy import func, select, table

from co2logserver.store import get_store

NOW = int(time.time())
JSON = "application/json"
CSV = "text/csv"


def rows_in(app, name: str) -> int:
    store = get_store(app)
    with store.engine.connect() as conn:
        if not store.engine.dialect.has_table(conn, name):
            return 0
        return conn.execute(select(func.count()).select_from(table(name))).scalar()


def readings_post(body: bytes):
    return ("POST", f"/rogue/v1/sensors/{uuid.uuid4()}/readings", body, JSON, {})


CASES = {
    "deep-json-list": (
        ("POST", "/upload", b"[" * 100000 + b"]" * 100000, JSON, {}),
        "not valid JSON",
    ),
    "deep-json-object": (
        ("POST", "/upload", b'{"a":' * 100000 + b"1" + b"}" * 100000, JSON, {}),
        "not valid JSON",
    ),
    "deep-readings": (readings_post(b"[" * 100000 + b"]" * 100000), "JSON"),
    "5000-digit-csv": (("POST", "/upload", b"co2\n" + b"9" * 5000, CSV, {}), "64-bit"),
    "5000-digit-form": (
        (
            "POST",
            "/upload",
            b"co2=" + b"9" * 5000,
            "application/x-www-form-urlencoded",
            {},
        ),
        "64-bit",
    ),
    "surrogate-value": (
        ("POST", "/upload", b'{"txt": "\\ud800"}', JSON, {}),
        "surrogate",
    ),
    "nul-value": (("POST", "/upload", b'{"txt": "a\\u0000b"}', JSON, {}), "NUL"),
    "nul-csv": (("POST", "/upload", b"txt\na\x00b\n", CSV, {}), "NUL"),
    "duplicate-csv-header": (
        ("POST", "/upload", b"rid,dup,dup\n1,2,3\n", CSV, {}),
        "'dup' more than once",
    ),
    "empty-reading-name": (
        readings_post(json.dumps([{"timestamp": NOW, "readings": {"": 1}}]).encode()),
        "observation 0",
    ),
    "empty-readings-mixed": (
        readings_post(
            json.dumps(
                [
                    {"timestamp": NOW, "readings": {"PM10": 1}},
                    {"timestamp": NOW, "readings": {}},
                ]
            ).encode()
        ),
        "observation 1",
    ),
    # Found by tests/test_fuzz_bodies.py: math.isfinite() overflows on such ints.
    "400-digit-reading": (
        readings_post(
            json.dumps([{"timestamp": NOW, "readings": {"PM10": 10**400}}]).encode()
        ),
        "reading PM10 must be a finite number",
    ),
    "400-digit-age": (
        readings_post(json.dumps([{"age": 10**400, "readings": {"PM10": 1}}]).encode()),
        "age must be a non-negative number",
    ),
    "timestamp-minus-one": (
        readings_post(
            json.dumps([{"timestamp": -1, "readings": {"PM10": 1}}]).encode()
        ),
        "out of range",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_hostile_upload_is_a_named_4xx_and_stores_nothing(any_db_app, case):
    app = any_db_app()
    (method, path, body, content_type, headers), words = CASES[case]
    response = app.test_client().open(
        path, method=method, data=body, content_type=content_type, headers=headers
    )
    assert 400 <= response.status_code < 500, response.data[:200]
    assert words in response.json["error"]
    assert rows_in(app, "data") == 0
    assert rows_in(app, "readings") == 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("manufacturer", "\ud800", "surrogate"), ("model", "a\x00b", "NUL")],
)
def test_registration_text_that_cannot_be_stored_is_a_400(
    any_db_app, field, value, words
):
    app = any_db_app()
    body = json.dumps({field: value}).encode()
    response = app.test_client().put(f"/v1/sensors/{uuid.uuid4()}", data=body)
    assert response.status_code == 400
    assert field in response.json["error"] and words in response.json["error"]
    assert rows_in(app, "sensors") == 0


def test_every_gzip_member_is_stored(any_db_app):
    app = any_db_app()
    body = gzip.compress(b"co2\n1\n2\n") + gzip.compress(b"3\n4\n")
    response = app.test_client().post(
        "/upload", data=body, content_type=CSV, headers={"Content-Encoding": "gzip"}
    )
    assert response.json == {"saved-in-db": 4}


def test_gzip_members_together_stay_under_the_limit(any_db_app):
    app = any_db_app(MAX_CONTENT_LENGTH=1000)
    member = gzip.compress(b"co2\n" + b"1\n" * 300)
    response = app.test_client().post(
        "/upload", data=member + member, content_type=CSV,
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert response.status_code == 413
    assert rows_in(app, "data") == 0


def test_an_integer_beyond_2_53_is_not_rounded_into_a_float_column(any_db_app):
    app = any_db_app()
    client = app.test_client()
    assert client.post("/upload", json={"fl": 1.5}).status_code == 200
    response = client.post(
        "/upload", data=b'{"fl": 9007199254740993}', content_type=JSON
    )
    assert response.status_code == 400
    assert "9007199254740993" in response.json["error"]
    assert client.post("/upload", json={"fl": 2**53}).status_code == 200
    assert rows_in(app, "data") == 2

"""POST /upload: the seed examples, formats, automatic columns, auth and refusals."""

from __future__ import annotations

import gzip
import hashlib
import json

import msgpack
import pytest

from tests.conftest import SEED_SALT

SEED_JSON = b'{"time_utc":[43,23],"co2":[1223,2351]}'
SEED_MD5 = "b71e91feb2be18ccca019914a1da5b1d"
SEED_BODIES = [
    ("application/json", SEED_JSON),
    ("text/csv", b"time_utc,co2\n43,1223\n23,2351"),
    ("application/x-www-form-urlencoded", b"time_utc=43&co2=1223&time_utc=23&co2=2351"),
    (
        "application/msgpack",
        bytes.fromhex("82a874696d655f757463922b17a3636f3292cd04c7cd092f"),
    ),
    (
        "application/x-msgpack",
        msgpack.packb({"time_utc": [43, 23], "co2": [1223, 2351]}),
    ),
]


def download(client, **params):
    """Rows through /download?format=json."""
    response = client.get("/download", query_string={"format": "json", **params})
    assert response.status_code == 200, response.data
    return response.get_json()


@pytest.mark.parametrize(("mimetype", "body"), SEED_BODIES)
def test_seed_examples_store_two_rows(any_db_app, mimetype, body):
    client = any_db_app().test_client()
    response = client.post("/upload", data=body, content_type=mimetype)
    assert response.status_code == 200
    assert response.get_json() == {"saved-in-db": 2}
    rows = download(client)
    assert [(r["time_utc"], r["co2"]) for r in rows] == [(43, 1223), (23, 2351)]
    assert all(r["time_upload_utc"] for r in rows)
    assert all(r["matched_checksums"] is None for r in rows)


def test_list_of_row_objects_and_scalars(client):
    assert client.post("/upload", json=[{"a": 1}, {"a": 2, "b": "x"}]).get_json() == {
        "saved-in-db": 2
    }
    assert client.post("/upload", json={"a": 3, "b": "y"}).get_json() == {
        "saved-in-db": 1
    }
    rows = download(client, cols="a,b")
    assert rows == [{"a": 1, "b": None}, {"a": 2, "b": "x"}, {"a": 3, "b": "y"}]


def test_column_names_are_lowercased(client):
    client.post("/upload", json={"CO2": [1], "Temp_C": [2.5]})
    assert download(client, cols="co2,temp_c") == [{"co2": 1, "temp_c": 2.5}]


def test_csv_and_form_numbers_and_text(client):
    body = b"a,b,c,d\n1,2.5,hello,\n-3,1e3,nan,x"
    assert client.post("/upload", data=body, content_type="text/csv").status_code == 200
    rows = download(client, cols="a,b,c,d")
    assert rows == [
        {"a": 1, "b": 2.5, "c": "hello", "d": None},
        {"a": -3, "b": 1000.0, "c": "nan", "d": "x"},
    ]


def test_time_columns_are_converted(client):
    client.post("/upload", json={"time": [1500000000], "co2": [400]})
    assert download(client, cols="time") == [{"time": "2017-07-14 02:40:00+00:00"}]


def test_unconvertible_time_is_400_and_nothing_stored(client):
    response = client.post(
        "/upload", json={"time": [1500000000, "soon"], "co2": [1, 2]}
    )
    assert response.status_code == 400
    assert "row 1" in response.get_json()["error"]
    assert "time" in response.get_json()["error"]
    client.post("/upload", json={"x": 1})
    assert download(client, cols="x") == [{"x": 1}]


def test_empty_rows_store_nothing_unless_allowed(make_app):
    client = make_app().test_client()
    assert client.post("/upload", json={}).get_json() == {"saved-in-db": 0}
    client = make_app(ALLOW_EMPTY_ROWS=True).test_client()
    assert client.post("/upload", json=[{}]).get_json() == {"saved-in-db": 1}


def test_accept_new_column_refuses_and_drops(make_app):
    client = make_app(ACCEPT_NEW_COLUMN=lambda col: col != "secret_col").test_client()
    response = client.post("/upload", json={"co2": [1], "secret_col": [2]})
    assert response.get_json() == {"saved-in-db": 1}
    columns = client.get("/download?cols=secret_col")
    assert columns.status_code == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"bad name": [1]}, "column name"),
        ({"1abc": [1]}, "column name"),
        ({"a" * 64: [1]}, "column name"),
        ({"x": [{"nested": 1}]}, "not a number or text"),
        ({"x": [2**70]}, "64-bit"),
    ],
)
def test_invalid_bodies_are_400_and_store_nothing(any_db_app, body, fragment):
    client = any_db_app().test_client()
    response = client.post("/upload", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]
    assert download(client) == []


def test_nan_in_json_is_refused(client):
    response = client.post(
        "/upload", data=b'{"x": [NaN]}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "finite" in response.get_json()["error"]


def test_text_into_number_column_is_400(any_db_app):
    client = any_db_app().test_client()
    assert client.post("/upload", json={"co2": [400]}).status_code == 200
    response = client.post("/upload", json={"co2": ["high"]})
    assert response.status_code == 400
    assert "co2" in response.get_json()["error"]
    assert len(download(client)) == 1


def test_fraction_into_integer_column_keeps_value(any_db_app):
    client = any_db_app().test_client()
    client.post("/upload", json={"co2": [400]})
    assert client.post("/upload", json={"co2": [400.5]}).status_code == 200
    assert [r["co2"] for r in download(client, cols="co2")] == [400, 400.5]


@pytest.mark.parametrize(
    ("mimetype", "status"),
    [("text/plain", 415), ("", 415), ("application/xml", 415)],
)
def test_unsupported_content_types(client, mimetype, status):
    response = client.post("/upload", data=b"a=1", content_type=mimetype)
    assert response.status_code == status
    assert "Content-Type" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("mimetype", "body"),
    [
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("application/msgpack", b"\xc1"),
        ("text/csv", b"a,b\n1,2,3"),
    ],
)
def test_malformed_bodies_are_400(client, mimetype, body):
    response = client.post("/upload", data=body, content_type=mimetype)
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_gzip_body(client):
    response = client.post(
        "/upload",
        data=gzip.compress(SEED_JSON),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.get_json() == {"saved-in-db": 2}


class TestSaltedAuth:
    """Salted-hash authentication with the seed's example."""

    @pytest.fixture
    def auth_client(self, any_db_app):
        app = any_db_app(UPLOAD_REQUIRES_AUTH=True, CHECKSUM_SALTS=[SEED_SALT])
        return app.test_client()

    def test_seed_md5_is_accepted(self, auth_client):
        response = auth_client.post(
            "/upload",
            data=SEED_JSON,
            content_type="application/json",
            headers={"Content-MD5-Salted": SEED_MD5},
        )
        assert response.get_json() == {"saved-in-db": 2}
        rows = download(auth_client)
        assert {(r["matched_checksums"], r["failed_checksums"]) for r in rows} == {
            ("md5", "")
        }

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Content-MD5-Salted": "0" * 32}, {"Content-MD5-Salted": "xyz"}],
    )
    def test_missing_or_wrong_hash_is_403(self, auth_client, headers):
        response = auth_client.post(
            "/upload", data=SEED_JSON, content_type="application/json", headers=headers
        )
        assert response.status_code == 403
        assert "Salted" in response.get_json()["error"]
        assert download(auth_client) == []

    def test_configured_header_regex_is_the_one_read(self, any_db_app):
        """CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX decides which headers count."""
        app = any_db_app(
            UPLOAD_REQUIRES_AUTH=True,
            CHECKSUM_SALTS=[SEED_SALT],
            SALTED_CHECKSUM_HEADER_REGEX=r"X-Checksum-(?P<algorithm>\w+)",
        )
        client = app.test_client()
        post = {"data": SEED_JSON, "content_type": "application/json"}
        old = client.post("/upload", headers={"Content-MD5-Salted": SEED_MD5}, **post)
        assert old.status_code == 403
        new = client.post("/upload", headers={"X-Checksum-MD5": SEED_MD5}, **post)
        assert new.get_json() == {"saved-in-db": 2}

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512", "blake2b"])
    def test_every_algorithm(self, auth_client, algorithm):
        digest = hashlib.new(algorithm, SEED_JSON + SEED_SALT.encode()).hexdigest()
        response = auth_client.post(
            "/upload",
            data=SEED_JSON,
            content_type="application/json",
            headers={f"content-{algorithm.upper()}-salted": digest},
        )
        assert response.status_code == 200

    def test_one_wrong_of_two_is_refused_by_default(self, auth_client):
        response = auth_client.post(
            "/upload",
            data=SEED_JSON,
            content_type="application/json",
            headers={"Content-MD5-Salted": SEED_MD5, "Content-SHA1-Salted": "0" * 40},
        )
        assert response.status_code == 403

    def test_hash_covers_the_gzip_bytes_as_sent(self, auth_client):
        body = gzip.compress(SEED_JSON)
        digest = hashlib.md5(body + SEED_SALT.encode()).hexdigest()
        response = auth_client.post(
            "/upload",
            data=body,
            content_type="application/json",
            headers={"Content-Encoding": "gzip", "Content-MD5-Salted": digest},
        )
        assert response.status_code == 200


def test_custom_auth_checker(make_app):
    app = make_app(
        UPLOAD_REQUIRES_AUTH=True,
        CHECKSUM_SALTS=["a", "b"],
        AUTH_CHECKER=lambda matches: matches.get("sha256") is not None,
    )
    client = app.test_client()
    body = b'{"x": 1}'
    md5 = hashlib.md5(body + b"a").hexdigest()
    assert (
        client.post(
            "/upload",
            data=body,
            content_type="application/json",
            headers={"Content-MD5-Salted": md5},
        ).status_code
        == 403
    )
    sha = hashlib.sha256(body + b"b").hexdigest()
    assert (
        client.post(
            "/upload",
            data=body,
            content_type="application/json",
            headers={"Content-SHA256-Salted": sha},
        ).status_code
        == 200
    )


def test_checksums_recorded_without_requirement(make_app):
    client = make_app(CHECKSUM_SALTS=[SEED_SALT]).test_client()
    client.post(
        "/upload",
        data=SEED_JSON,
        content_type="application/json",
        headers={"Content-MD5-Salted": SEED_MD5, "Content-SHA1-Salted": "1" * 40},
    )
    row = download(client)[0]
    assert (row["matched_checksums"], row["failed_checksums"]) == ("md5", "sha1")


def test_new_columns_on_existing_rows(client):
    client.post("/upload", json={"a": [1]})
    client.post("/upload", json={"b": ["x"]})
    assert download(client, cols="a,b") == [{"a": 1, "b": None}, {"a": None, "b": "x"}]
    assert json.loads(client.get("/download?format=json&cols=a").data)[0] == {"a": 1}

"""Size limits: bodies, gzip bombs, rows, observations, columns; JSON errors."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import tracemalloc
import uuid
import zlib
from collections.abc import Iterator

import msgpack
import pytest
from sqlalchemy import create_engine, inspect
from werkzeug.serving import make_server

from tests.conftest import observations

TS = 1_700_000_000
MIB = 1024 * 1024


def assert_json_error(reply, status: int, *fragments: str) -> None:
    """The one error shape, with the status and words that say what to change."""
    assert reply.status_code == status, reply.data
    assert reply.is_json and set(reply.get_json()) == {"error"}
    for fragment in fragments:
        assert fragment in reply.get_json()["error"]


def columns_of(db_path: str) -> list[str]:
    """The data table's columns, read straight from the file."""
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        return [c["name"] for c in inspect(engine).get_columns("data")]
    finally:
        engine.dispose()


def ingest_routes(suid: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/upload"),
        ("POST", f"/v1/sensors/{suid}/readings"),
        ("POST", f"/rogue/v1/sensors/{suid}/readings"),
        ("PUT", f"/v1/sensors/{suid}"),
    ]


@pytest.mark.parametrize("route", range(4))
def test_body_over_the_limit_is_413_json(make_app, route):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    method, path = ingest_routes(str(uuid.uuid4()))[route]
    body = json.dumps({"co2": list(range(400))}).encode()
    assert len(body) > 1000
    reply = client.open(path, method=method, data=body, content_type="application/json")
    assert_json_error(reply, 413, "too large")


@pytest.fixture
def http_server(make_app) -> Iterator[tuple[str, int]]:
    """The app on a real HTTP server (werkzeug, threaded) on 127.0.0.1."""
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    thread.join(10)


def test_413_comes_before_the_body_is_read(http_server):
    """A 50 MiB Content-Length is refused at once, though no body byte was sent."""
    with socket.create_connection(http_server, timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 52428800\r\n\r\n"
        )
        head = sock.recv(4096)  # times out (fails) if the server waits for a body
    status_line, _, rest = head.partition(b"\r\n")
    assert b" 413 " in status_line
    assert b"application/json" in rest


def test_chunked_body_over_the_limit_stores_nothing(http_server):
    """No Content-Length to refuse up front: a body cut at the limit is refused.

    Every CSV line is valid, so a silently cut body would store most rows and a
    truncated last value; it must be a 413 that stores nothing instead.
    """
    conn = http.client.HTTPConnection(*http_server, timeout=30)

    def body():
        yield b"co2,note\n"
        for _ in range(9000):  # about 1.1 MB, over the 1 MiB default
            yield b"123456," + b"x" * 113 + b"\n"

    conn.request(
        "POST",
        "/upload",
        body=body(),
        headers={"Content-Type": "text/csv"},
        encode_chunked=True,
    )
    reply = conn.getresponse()
    assert reply.status == 413
    assert set(json.loads(reply.read())) == {"error"}
    conn.close()
    conn = http.client.HTTPConnection(*http_server, timeout=30)
    conn.request("GET", "/download?format=json")
    assert json.loads(conn.getresponse().read()) == []
    conn.close()


def gzip_stream(total: int, piece: bytes = b"\0" * MIB) -> bytes:
    """Gzip of ``total`` bytes of zeros, made piece by piece (little memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(piece) for _ in range(total // len(piece))]
    return b"".join(parts) + compressor.flush()


def test_gzip_body_within_the_limit_is_stored(client):
    body = gzip.compress(json.dumps({"co2": list(range(1000))}).encode())
    reply = client.post(
        "/upload",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert reply.get_json() == {"saved-in-db": 1000}


def test_gzip_limit_is_on_the_decompressed_size(make_app):
    client = make_app(MAX_CONTENT_LENGTH=10_000).test_client()
    plain = json.dumps({"co2": [1] * 6000}).encode()
    body = gzip.compress(plain)
    assert len(body) < 10_000 < len(plain)
    reply = client.post(
        "/upload",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert_json_error(reply, 413, "decompressed")
    assert client.get("/download?format=json").get_json() == []


def test_gzip_bomb_is_413_with_little_memory(client):
    """200 MiB of zeros in a ~200 KiB body: refused after inflating only 1 MiB."""
    bomb = gzip_stream(200 * MIB)
    assert len(bomb) < MIB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        reply = client.post(
            "/upload",
            data=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_json_error(reply, 413, "decompressed")
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_gzip_bomb_on_the_sensor_api(sensors):
    reply = sensors.post_rogue(
        sensors.new_suid(),
        gzip_stream(50 * MIB),
        headers={"Content-Encoding": "gzip"},
    )
    assert_json_error(reply, 413, "decompressed")


@pytest.mark.parametrize(
    ("encoding", "body", "status"),
    [
        ("br", b"\x0b\x02\x80{}\x03", 415),
        ("gzip", b"not gzip at all", 400),
        ("gzip", gzip.compress(b'{"co2": [1, 2]}')[:-12], 400),
    ],
    ids=["unknown-encoding", "not-gzip", "truncated-gzip"],
)
def test_bad_encodings_are_refused(client, encoding, body, status):
    reply = client.post(
        "/upload",
        data=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert_json_error(reply, status)


def rows_body(mimetype: str, count: int) -> bytes:
    """``count`` rows of one column in each upload format."""
    values = list(range(count))
    if mimetype == "application/json":
        return json.dumps({"co2": values}).encode()
    if mimetype == "application/msgpack":
        return msgpack.packb({"co2": values})
    if mimetype == "text/csv":
        return ("co2\n" + "\n".join(map(str, values))).encode()
    return "&".join(f"co2={v}" for v in values).encode()


@pytest.mark.parametrize(
    "mimetype",
    [
        "application/json",
        "application/msgpack",
        "text/csv",
        "application/x-www-form-urlencoded",
    ],
)
def test_rows_per_upload_are_capped(make_app, mimetype):
    client = make_app(MAX_ROWS=10).test_client()
    full = client.post("/upload", data=rows_body(mimetype, 10), content_type=mimetype)
    assert full.get_json() == {"saved-in-db": 10}
    over = client.post("/upload", data=rows_body(mimetype, 11), content_type=mimetype)
    assert_json_error(over, 413, "CO2LOGSERVER_MAX_ROWS")
    assert len(client.get("/download?format=json").get_json()) == 10


def test_observations_per_request_are_capped(make_app):
    client = make_app(MAX_OBSERVATIONS=5).test_client()
    suid = str(uuid.uuid4())
    url = f"/rogue/v1/sensors/{suid}/readings"
    assert client.post(url, data=observations(*range(TS, TS + 5))).status_code == 200
    over = client.post(url, data=observations(*range(TS + 10, TS + 16)))
    assert_json_error(over, 413, "CO2LOGSERVER_MAX_OBSERVATIONS")
    stored = client.get(f"/v1/sensors/{suid}/readings").get_json()["readings"]
    assert {r["timestamp"] for r in stored} == set(range(TS, TS + 5))


def test_new_columns_per_upload_are_capped(make_app, db_path):
    client = make_app(MAX_NEW_COLUMNS=3).test_client()
    assert client.post("/upload", json={"a": 1, "b": 2, "c": 3}).status_code == 200
    before = columns_of(db_path)
    over = client.post("/upload", json={"d": 1, "e": 2, "f": 3, "g": 4, "a": 5})
    assert_json_error(over, 400, "CO2LOGSERVER_MAX_NEW_COLUMNS")
    assert columns_of(db_path) == before
    assert len(client.get("/download?format=json").get_json()) == 1


def test_total_columns_of_the_data_table_are_capped(make_app, db_path):
    client = make_app(MAX_COLUMNS=6).test_client()  # 3 automatic columns + 3
    assert client.post("/upload", json={"a": 1, "b": 2}).status_code == 200
    assert client.post("/upload", json={"c": 1}).status_code == 200
    before = columns_of(db_path)
    assert len(before) == 6
    assert_json_error(
        client.post("/upload", json={"d": 1}), 400, "CO2LOGSERVER_MAX_COLUMNS"
    )
    assert columns_of(db_path) == before
    # known columns keep working at the cap
    assert client.post("/upload", json={"a": 7}).get_json() == {"saved-in-db": 1}


def test_registration_metadata_is_capped(make_app):
    client = make_app(MAX_METADATA_BYTES=100).test_client()
    suid = str(uuid.uuid4())
    reply = client.put(f"/v1/sensors/{suid}", json={"note": "x" * 200})
    assert_json_error(reply, 413, "metadata")
    assert client.get(f"/v1/sensors/{suid}").status_code == 404

"""A long CSV export is whole, or fails visibly: never a clean, short 200 (#18).

Under gunicorn's sync worker ``--timeout`` covers a streamed response too: the
arbiter kills a worker that has not checked in for that long, even mid-stream. The
export is sent with chunked transfer encoding (no Content-Length), so a killed
worker leaves the body without its final zero-length chunk: the client sees an
incomplete body, not a clean end. Under the gthread worker, whose main loop checks
in while a thread streams, the same export completes. A client that reads slowly
holds the stream open past the timeout on a small database.
"""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from co2logserver import create_app
from co2logserver.store import get_store
from tests.appserver import GunicornServer
from tests.conftest import observations

pytestmark = pytest.mark.slow

ROWS = 200_000
SUID = "123e4567-e89b-12d3-a456-426655440000"
#: Above 3 s: gthread's main loop closes a finished connection itself, lingering up
#: to 2 s for the peer (gunicorn.util.close_graceful) on top of its 1 s poll, and
#: does not check in meanwhile; a 2 s timeout killed it then under load.
TIMEOUT = 4


def seed(path) -> None:
    """A data table of ``ROWS`` rows (about 13 MB of CSV), made by the app."""
    app = create_app({"DB": str(path), "RATELIMIT_ENABLED": False})
    client = app.test_client()
    response = client.post("/upload", json={"time": [1700000000], "co2": [412]})
    assert response.status_code == 200
    body = observations(1700000000, 1700000060)
    assert (
        client.post(f"/rogue/v1/sensors/{SUID}/readings", data=body).status_code == 200
    )
    get_store(app).dispose()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO data (time_upload_utc, time, co2) VALUES (?, ?, ?)",
            (
                ("2026-12-01 00:00:00+00:00", "2026-12-01 00:00:00+00:00", i)
                for i in range(ROWS - 1)
            ),
        )


def slow_download(
    port: int, pause: float, path: str = f"/download?format=csv&number={ROWS}"
) -> tuple[bytes, bytes]:
    """GET the whole CSV export, pausing after the first bytes as a slow client
    does; return the response head and the raw (still chunked) body."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(30)
    with sock:
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        data = sock.recv(4096)
        time.sleep(pause)
        while chunk := sock.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The body of a chunked message and whether it ended with its last chunk."""
    body, position = bytearray(), 0
    while True:
        end = raw.find(b"\r\n", position)
        if end < 0:
            return bytes(body), False
        size = int(raw[position:end].split(b";")[0], 16)
        if size == 0:
            return bytes(body), raw[end + 2 : end + 4] == b"\r\n"
        start = end + 2
        if len(raw) < start + size + 2:
            body += raw[start : start + size]
            return bytes(body), False
        body += raw[start : start + size]
        position = start + size + 2


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export")
    seed(workdir / "co2.sqlite")
    return workdir


def serve(workdir, *worker_args: str) -> GunicornServer:
    settings = {
        "DB": str(workdir / "co2.sqlite"),
        "RATELIMIT_ENABLED": "False",
        "MAX_LIMIT_OF_ROWS": str(ROWS),
    }
    return GunicornServer(
        workdir,
        settings,
        workers=1,
        extra_args=("--timeout", str(TIMEOUT), *worker_args),
    )


def test_a_sync_worker_killed_mid_export_leaves_the_body_unterminated(database):
    with serve(database) as server:
        head, raw = slow_download(server.port, pause=TIMEOUT * 3)
        log = server.log()
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    body, complete = dechunk(raw)
    assert "WORKER TIMEOUT" in log  # the worker was killed, mid-stream
    assert not complete, "a truncated export ended like a whole one"
    assert body.count(b"\n") < ROWS + 1


def test_the_gthread_worker_finishes_the_same_export(database):
    with serve(database, "--worker-class", "gthread", "--threads", "2") as server:
        head, raw = slow_download(server.port, pause=TIMEOUT * 3)
        readings = f"/v1/sensors/{SUID}/readings?format=csv"
        readings_head, readings_raw = slow_download(server.port, 0, readings)
        log = server.log()
    # The readings read-back's CSV is framed the same way.
    assert b"transfer-encoding: chunked" in readings_head.lower()
    assert b"content-length" not in readings_head.lower()
    readings_body, readings_complete = dechunk(readings_raw)
    assert readings_complete and readings_body.count(b"\n") == 1 + 2 * 2
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    body, complete = dechunk(raw)
    assert "WORKER TIMEOUT" not in log, log
    assert complete
    lines = body.decode().splitlines()
    assert set(lines[0].split(",")) == {
        "time_upload_utc", "matched_checksums", "failed_checksums", "time", "co2"
    }  # fmt: skip
    assert len(lines) == ROWS + 1

"""Malformed chunked framing is a 400 from the app, not a 500 (#11)."""

from __future__ import annotations

import socket

import pytest

from tests.appserver import GunicornServer

BAD_FRAMES = {
    "bad-size": b"ZZ\r\n{}\r\n0\r\n\r\n",
    "missing-terminator": b"2\r\n{}XX0\r\n\r\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chunked")
    settings = {"DB": str(workdir / "co2.sqlite"), "RATELIMIT_ENABLED": "False"}
    with GunicornServer(workdir, settings, workers=1) as running:
        yield running


def send_raw(port: int, framed: bytes) -> bytes:
    head = (
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + framed)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("frame", BAD_FRAMES, ids=list(BAD_FRAMES))
def test_bad_chunked_framing_is_a_400(server, frame):
    reply = send_raw(server.port, BAD_FRAMES[frame])
    status = reply.split(b" ", 2)[1]
    assert status == b"400", reply[:300]
    assert b"Internal Server Error" not in reply

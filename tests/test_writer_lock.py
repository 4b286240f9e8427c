"""SQLite writers of all processes take turns on the lock file beside the database."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from co2logserver.store import writer_lock
from tests.appserver import GunicornServer
from tests.conftest import observations
from tests.stored import eventually

TS = 1_700_000_000


def test_an_upload_waits_for_the_writer_turn_and_then_stores(client, db_path):
    """While another process holds the turn, an upload waits instead of failing."""
    client.post("/upload", json={"co2": [1]})  # creates the schema and the lock file
    path = writer_lock.lock_path(db_path)
    assert os.path.exists(path)
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # an open file description of its own
    statuses = []
    upload = threading.Thread(
        target=lambda: statuses.append(
            client.post("/upload", json={"co2": [2]}).status_code
        )
    )
    try:
        upload.start()
        upload.join(timeout=1.0)
        assert upload.is_alive(), "the upload did not wait for the writer turn"
        assert statuses == []
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    upload.join(timeout=10)
    assert statuses == [200]
    rows = client.get("/download?format=json&cols=co2").get_json()
    assert sorted(row["co2"] for row in rows) == [1, 2]


def test_a_database_without_a_writable_directory_still_takes_uploads(
    tmp_path, build_app
):
    """Without the lock file the writers queue in SQLite itself; nothing fails."""
    database = tmp_path / "co2.sqlite"
    build_app({"DB": str(database)}).test_client().post("/upload", json={"co2": [1]})
    os.remove(writer_lock.lock_path(str(database)))
    os.mkdir(writer_lock.lock_path(str(database)))  # cannot be opened as a file
    client = build_app({"DB": str(database)}).test_client()
    assert client.post("/upload", json={"co2": [2]}).status_code == 200
    assert len(client.get("/download?format=json").get_json()) == 2


def test_without_flock_writers_queue_in_sqlite_alone(monkeypatch, tmp_path, build_app):
    """Where the platform has no flock (Windows), no lock file, and uploads work."""
    monkeypatch.setattr(writer_lock, "fcntl", None)
    database = tmp_path / "co2.sqlite"
    client = build_app({"DB": str(database)}).test_client()
    assert client.post("/upload", json={"co2": [1, 2]}).get_json() == {"saved-in-db": 2}
    assert not os.path.exists(writer_lock.lock_path(str(database)))


BUSY_TIMEOUT = 2
MARGIN = 2  # seconds of HTTP and scheduling on a loaded machine, not of waiting


def timed_post(url: str, **kwargs) -> tuple[int, str | None, float]:
    """Status, ``Retry-After`` and seconds of one POST (the client waits 60 s)."""
    started = time.monotonic()
    reply = requests.post(url, timeout=60, **kwargs)
    return (
        reply.status_code,
        reply.headers.get("Retry-After"),
        (time.monotonic() - started),
    )


def markers(database: str) -> dict[str, int]:
    """Legacy rows per marker, read with a connection of the test's own."""
    conn = sqlite3.connect(database)
    try:
        return dict(conn.execute("SELECT marker, count(*) FROM data GROUP BY 1"))
    finally:
        conn.close()


@pytest.mark.parametrize("spool", ["off", "on"])
def test_an_outside_writer_costs_each_request_one_busy_timeout_at_most(tmp_path, spool):
    """While another process holds SQLite's write lock (a backup, the ``sqlite3``
    shell), concurrent writers queue on the lock file; each still answers 503 within
    its own busy timeout instead of adding the waits of those ahead of it: 503 with
    the spool off; 200 with it on, and stored once the lock is released."""
    database = str(tmp_path / "co2.sqlite")
    settings = {
        "DB": database,
        "SQLITE_BUSY_TIMEOUT": str(BUSY_TIMEOUT),
        "RETRY_AFTER": "7",
        "RATELIMIT_ENABLED": "False",
        "SPOOL_MAX_BYTES": "0" if spool == "off" else str(2**20),
    }
    suid = str(uuid.uuid4())
    requests_ = [
        (f"/v1/sensors/{suid}/readings", {"data": observations(TS + i)})
        if i % 2
        else ("/upload", {"json": {"marker": ["during"]}})
        for i in range(6)
    ]
    # Six request threads in two processes: every request is served at once.
    server = GunicornServer(
        tmp_path, settings, workers=2, extra_args=("--threads", "6")
    )
    with server:
        assert timed_post(server.url + "/upload", json={"marker": ["before"]})[0] == 200
        assert (
            timed_post(
                f"{server.url}/v1/sensors/{suid}/readings", data=observations(TS)
            )[0]
            == 200
        )
        outsider = sqlite3.connect(database, isolation_level=None)
        try:
            outsider.execute("BEGIN IMMEDIATE")
            with ThreadPoolExecutor(len(requests_)) as pool:
                locked = list(
                    pool.map(lambda r: timed_post(server.url + r[0], **r[1]), requests_)
                )
            health = requests.get(server.url + "/health", timeout=30).status_code
        finally:
            outsider.rollback()
            outsider.close()
        after = timed_post(server.url + "/upload", json={"marker": ["after"]})
        readings = timed_post(
            f"{server.url}/v1/sensors/{suid}/readings", data=observations(TS + 50)
        )
        spooled = 3 if spool == "on" else 0
        assert eventually(lambda: markers(database).get("during", 0) == spooled)
        log = server.log()
    for status, retry_after, seconds in locked:
        assert seconds < BUSY_TIMEOUT + MARGIN, [s for *_, s in locked]
        if spool == "off":
            assert (status, retry_after) == (503, "7")
        else:
            assert status == 200
    assert health == 200  # readers do not wait for writers (WAL)
    assert (after[0], readings[0]) == (200, 200)
    expected = {"before": 1, "after": 1} | ({"during": spooled} if spooled else {})
    assert markers(database) == expected
    assert "Traceback" not in log, log

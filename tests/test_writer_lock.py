"""SQLite writers of all processes take turns on the lock file beside the database."""

from __future__ import annotations

import fcntl
import os
import threading

from co2logserver.store import writer_lock


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

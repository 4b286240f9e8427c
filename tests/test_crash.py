"""Crash safety: SIGKILL the server in the middle of a write load, then restart it.

Every acknowledged upload and reading must be there after the restart, an upload or
readings request that was not acknowledged is there whole or not at all, and SQLite's
``PRAGMA integrity_check`` says ``ok``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.appserver import GunicornServer
from tests.stored import eventually

CLIENTS = 16
ROWS = 50
OBSERVATIONS = 20
ACKED_BEFORE_CRASH = 40
MAX_WAIT_BEFORE_CRASH = 20.0
MAX_LOAD = 60.0


@dataclass
class Client:
    """One writer: what it sent and what was acknowledged."""

    index: int
    suid: str = field(default_factory=lambda: str(uuid.uuid4()))
    base: int = field(default_factory=lambda: int(time.time()) - 10**6)
    sent: int = 0
    acked: set = field(default_factory=set)
    statuses: collections.Counter = field(default_factory=collections.Counter)

    def request(self, session: requests.Session, url: str, seq: int):
        """Send upload or readings number ``seq``."""
        if self.index % 2 == 0:
            body = {
                "client": [self.index] * ROWS,
                "seq": [seq] * ROWS,
                "row": list(range(ROWS)),
            }
            return session.post(f"{url}/upload", json=body, timeout=30)
        body = json.dumps(
            [
                {"timestamp": self.timestamp(seq, k), "readings": {"PM10": 1.0 * k}}
                for k in range(OBSERVATIONS)
            ]
        ).encode()
        return session.post(
            f"{url}/rogue/v1/sensors/{self.suid}/readings", data=body, timeout=30
        )

    def timestamp(self, seq: int, k: int) -> int:
        """Timestamp of observation ``k`` of request ``seq``."""
        return self.base + seq * OBSERVATIONS + k

    def run(self, url: str, stop: threading.Event) -> None:
        """Write until stopped or the server is gone."""
        session = requests.Session()
        deadline = time.monotonic() + MAX_LOAD
        while not stop.is_set() and time.monotonic() < deadline:
            seq = self.sent
            self.sent += 1
            try:
                reply = self.request(session, url, seq)
            except requests.RequestException:
                return  # the server died: this request is unacknowledged
            self.statuses[reply.status_code] += 1
            if reply.status_code == 200:
                self.acked.add(seq)


def acknowledged(clients: list[Client]) -> int:
    """How many requests the server has acknowledged to all ``clients``."""
    return sum(len(c.acked) for c in clients)


@contextlib.contextmanager
def writing(server: GunicornServer, clients: list[Client]) -> Iterator[None]:
    """Every client writing to ``server`` in a thread of its own during the block;
    after it (a crash or a failure) the clients end and the server is stopped."""
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(server.url, stop)) for c in clients]
    try:
        for thread in threads:
            thread.start()
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()


def uploads_by_seq(db: sqlite3.Connection) -> dict[tuple[int, int], int]:
    """How many rows each (client, seq) upload has in the data table."""
    rows = db.execute(
        "SELECT client, seq, count(*) FROM data "
        "WHERE client IS NOT NULL GROUP BY client, seq"
    )
    return {(client, seq): count for client, seq, count in rows}


def readings_by_suid(db: sqlite3.Connection) -> dict[str, set[int]]:
    """The stored timestamps of every SUID."""
    found: dict[str, set[int]] = collections.defaultdict(set)
    for suid, ts in db.execute(
        "SELECT r.suid, d.ts FROM readings d "
        "JOIN registrations r ON r.id = d.registration_id"
    ):
        found[suid].add(ts)
    return found


def check_uploads(clients: list[Client], stored: dict) -> None:
    """Acknowledged uploads are whole; others are whole or absent; nothing else."""
    for (index, seq), rows in stored.items():
        assert rows == ROWS, f"upload {index}/{seq} is half-stored: {rows} rows"
        assert seq < clients[index].sent, f"upload {index}/{seq} was never sent"
    for client in clients[::2]:
        missing = [seq for seq in client.acked if (client.index, seq) not in stored]
        assert not missing, f"acknowledged uploads lost: {client.index} {missing}"


def check_readings(clients: list[Client], stored: dict) -> None:
    """The same for readings requests: all of their observations or none."""
    for client in clients[1::2]:
        timestamps = stored.get(client.suid, set())
        for seq in range(client.sent):
            wanted = {client.timestamp(seq, k) for k in range(OBSERVATIONS)}
            present = wanted & timestamps
            assert present in (set(), wanted), f"request {seq} is half-stored"
            if seq in client.acked:
                assert present == wanted, f"acknowledged readings {seq} lost"
        assert len(timestamps) == len(timestamps & {
            client.timestamp(seq, k)
            for seq in range(client.sent)
            for k in range(OBSERVATIONS)
        })  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_sigkill_during_writes_loses_no_acknowledged_row(tmp_path, synchronous):
    """A killed server loses nothing it acknowledged, with either synchronous mode.

    (``NORMAL`` gives up only power-loss safety, which no test here can cut.)
    """
    db_path = tmp_path / "co2.sqlite"
    settings = {
        "DB": str(db_path),
        "RATELIMIT_ENABLED": "False",
        "SQLITE_SYNCHRONOUS": synchronous,
    }
    clients = [Client(i) for i in range(CLIENTS)]
    server = GunicornServer(tmp_path, settings, workers=2)
    server.start()
    with writing(server, clients):  # crash once the load is in full swing
        eventually(
            lambda: acknowledged(clients) >= ACKED_BEFORE_CRASH, MAX_WAIT_BEFORE_CRASH
        )
        server.crash()
    assert acknowledged(clients) >= ACKED_BEFORE_CRASH  # load ran
    statuses = sum((c.statuses for c in clients), collections.Counter())
    assert set(statuses) == {200}, statuses

    with GunicornServer(tmp_path, settings, workers=2) as restarted:
        reply = requests.post(
            restarted.url + "/upload", json={"after_restart": [1]}, timeout=30
        )
        assert reply.json() == {"saved-in-db": 1}

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        check_uploads(clients, uploads_by_seq(db))
        check_readings(clients, readings_by_suid(db))


LOADED_CLIENTS = 64
ACKED_UNDER_LOAD = 96


def check_exactly_once(clients: list[Client], db: sqlite3.Connection) -> None:
    """Every acknowledged request is stored whole and once; nothing else is stored."""
    uploads = uploads_by_seq(db)
    doubled = {key: n for key, n in uploads.items() if n > ROWS}
    assert not doubled, f"uploads stored twice: {sorted(doubled)[:10]}"
    check_uploads(clients, uploads)
    check_readings(clients, readings_by_suid(db))
    (readings, distinct), = db.execute(
        "SELECT count(*), count(DISTINCT registration_id || ':' || ts || ':' || type) "
        "FROM readings"
    )  # fmt: skip
    assert readings == distinct


@pytest.mark.slow
@pytest.mark.parametrize("path", ["database", "spool"])
def test_sigkill_under_64_connections_loses_no_acknowledged_row(tmp_path, path):
    """2 workers x 64 connections, SIGKILL mid-load, restart: every acknowledged row
    is stored exactly once, on the normal path (``database``) and through the spool
    (``spool``: another connection holds SQLite's write lock, so every request waits
    out its busy timeout and is spooled; the kill hits a spool full of unapplied
    records, which the restarted server applies)."""
    db_path = tmp_path / "co2.sqlite"
    settings = {"DB": str(db_path), "RATELIMIT_ENABLED": "False"}
    if path == "spool":  # each request waits 1 s for the lock, then is spooled
        settings["SQLITE_BUSY_TIMEOUT"] = "1"
    spool = Path(str(db_path) + ".spool")
    clients = [Client(i) for i in range(LOADED_CLIENTS)]
    server = GunicornServer(
        tmp_path, settings, workers=2, extra_args=("--threads", "32")
    )
    server.start()
    assert requests.post(server.url + "/upload", json={"first": [1]}).ok  # the schema
    outsider = sqlite3.connect(db_path, isolation_level=None)
    try:
        if path == "spool":
            outsider.execute("BEGIN IMMEDIATE")
        with writing(server, clients):
            eventually(lambda: acknowledged(clients) >= ACKED_UNDER_LOAD, 20)
            spooled = [p for p in spool.glob("*.seg") if p.stat().st_size]
            server.crash()
    finally:
        server.stop()  # stopped already, unless BEGIN failed
        if outsider.in_transaction:
            outsider.rollback()
        outsider.close()
    acked = acknowledged(clients)
    assert acked >= ACKED_UNDER_LOAD, acked  # the load ran
    statuses = sum((c.statuses for c in clients), collections.Counter())
    assert set(statuses) == {200}, statuses
    if path == "spool":
        assert spooled, "nothing was spooled"
    unanswered = sum(c.sent - sum(c.statuses.values()) for c in clients)
    print(f"{path}: {acked} acknowledged, {unanswered} unanswered at the kill")

    with GunicornServer(tmp_path, settings, workers=2) as restarted:
        assert eventually(lambda: not list(spool.glob("*.seg")), 30), "not applied"
        reply = requests.post(
            restarted.url + "/upload", json={"after_restart": [1]}, timeout=30
        )
        assert reply.json() == {"saved-in-db": 1}
        assert "Traceback" not in restarted.log()

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        check_exactly_once(clients, db)

"""Many writers, one SQLite file: gunicorn with 4 workers under 64 clients for 20 s.

Every client counts what the server acknowledged; afterwards the database must hold
exactly that: each acknowledged upload's rows once, no row of an upload that was not
acknowledged, and every acknowledged reading. No request may get a 5xx.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from tests.appserver import GunicornServer

WORKERS = 4
CLIENTS = 64
DURATION = 20.0
ROWS = 5
OBSERVATIONS = 3
EXTRA_COLUMNS = 8


@dataclass
class Tally:
    """What one client sent and what the server acknowledged."""

    acked_uploads: set = field(default_factory=set)
    acked_readings: set = field(default_factory=set)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list = field(default_factory=list)


def upload_body(client: int, seq: int) -> dict:
    """Rows tagged with client, sequence and row number; first uploads add columns."""
    body = {
        "client": [client] * ROWS,
        "seq": [seq] * ROWS,
        "row": list(range(ROWS)),
        "co2": [400 + seq % 100 + r for r in range(ROWS)],
    }
    if seq < 2:  # many workers add the same new columns at the same moment
        body[f"extra_{(client + seq) % EXTRA_COLUMNS}"] = [1.5] * ROWS
    return body


def readings_body(base: int, seq: int) -> bytes:
    """Observations at timestamps unique to the sequence number."""
    return json.dumps(
        [
            {"timestamp": base + seq * OBSERVATIONS + k, "readings": {"CO": seq + 0.5}}
            for k in range(OBSERVATIONS)
        ]
    ).encode()


def run_client(index: int, url: str, deadline: float, tally: Tally) -> None:
    """Upload (even clients) or post readings (odd) until the deadline."""
    session = requests.Session()
    suid = str(uuid.uuid4())
    base = int(time.time()) - 10**6
    seq = 0
    while time.monotonic() < deadline:
        try:
            if index % 2 == 0:
                reply = session.post(
                    f"{url}/upload", json=upload_body(index, seq), timeout=60
                )
                if reply.status_code == 200 and reply.json() == {"saved-in-db": ROWS}:
                    tally.acked_uploads.add((index, seq))
            else:
                body = readings_body(base, seq)
                reply = session.post(
                    f"{url}/rogue/v1/sensors/{suid}/readings", data=body, timeout=60
                )
                if reply.status_code == 200:
                    tally.acked_readings.update(
                        (suid, base + seq * OBSERVATIONS + k)
                        for k in range(OBSERVATIONS)
                    )
            tally.statuses[reply.status_code] += 1
        except requests.RequestException as error:
            tally.failures.append(repr(error))
        seq += 1


def stored_uploads(path) -> collections.Counter:
    """How often each (client, seq, row) is in the data table."""
    with sqlite3.connect(path) as db:
        return collections.Counter(
            db.execute("SELECT client, seq, row FROM data WHERE client IS NOT NULL")
        )


def stored_readings(path) -> tuple[set, dict, dict]:
    """Readings as (suid, ts) pairs, and per-SUID row counts and counters."""
    with sqlite3.connect(path) as db:
        pairs = list(
            db.execute(
                "SELECT r.suid, d.ts FROM readings d "
                "JOIN registrations r ON r.id = d.registration_id"
            )
        )
        counters = dict(db.execute("SELECT suid, reading_count FROM sensors"))
    rows = collections.Counter(suid for suid, _ts in pairs)
    return set(pairs), dict(rows), counters


@pytest.mark.slow
def test_many_workers_lose_nothing_and_store_nothing_twice(tmp_path):
    db = tmp_path / "co2.sqlite"
    settings = {"DB": str(db), "RATELIMIT_ENABLED": "False"}
    tallies = [Tally() for _ in range(CLIENTS)]
    with GunicornServer(tmp_path, settings, workers=WORKERS) as server:
        deadline = time.monotonic() + DURATION
        threads = [
            threading.Thread(target=run_client, args=(i, server.url, deadline, t))
            for i, t in enumerate(tallies)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION + 120)
        assert not any(thread.is_alive() for thread in threads)
        log = server.log()

    statuses = sum((t.statuses for t in tallies), collections.Counter())
    failures = [f for t in tallies for f in t.failures]
    assert not failures, failures[:5]
    assert set(statuses) == {200}, (statuses, log)
    assert "Traceback" not in log, log

    acked = {key for t in tallies for key in t.acked_uploads}
    expected = collections.Counter(
        (client, seq, row) for client, seq in acked for row in range(ROWS)
    )
    assert len(acked) > 20  # the load really ran
    assert stored_uploads(db) == expected

    acked_readings = {key for t in tallies for key in t.acked_readings}
    pairs, rows, counters = stored_readings(db)
    assert len(acked_readings) > 60
    assert pairs == acked_readings
    assert rows == counters

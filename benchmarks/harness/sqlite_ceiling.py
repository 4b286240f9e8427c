"""The storage ceiling: raw SQLite inserting the rows a 100-row upload stores.

One process, WAL mode, ``executemany`` of 100 rows and one commit per 100 rows, with
the same ``synchronous`` setting as the server: what the disk and SQLite allow
before any HTTP, parsing or validation.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from pathlib import Path

BATCH = 100
COLUMNS = (
    "time_upload_utc",
    "matched_checksums",
    "failed_checksums",
    "time",
    "co2",
    "temperature",
    "humidity",
)
CREATE = (
    'CREATE TABLE "data" ("time_upload_utc" DATETIME, "matched_checksums" TEXT, '
    '"failed_checksums" TEXT, "time" DATETIME, "co2" INTEGER, "temperature" REAL, '
    '"humidity" REAL)'
)


def legacy_row(t: int, uploaded: str) -> tuple:
    """One row as co2logserver stores it (the values of lua/ingest.lua's rows)."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(sep=" ")
    return (
        uploaded,
        None,
        None,
        moment,
        400 + t % 600,
        (t % 300) / 10,
        30 + t % 60 + 0.5,
    )


def batches(count: int, start: int) -> list[list[tuple]]:
    """``count`` batches of distinct rows, prepared before the clock starts."""
    uploaded = datetime.datetime.now(datetime.UTC).isoformat(sep=" ")
    return [
        [legacy_row(start + b * BATCH + j, uploaded) for j in range(BATCH)]
        for b in range(count)
    ]


def run(path: Path, duration: float, synchronous: str) -> dict[str, float]:
    """Insert 100-row batches for ``duration`` seconds; return the rates."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(CREATE)
    sql = f"INSERT INTO data ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 7)})"
    prepared = batches(2000, 1_000_000_000)
    commits = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        conn.execute("BEGIN")
        conn.executemany(sql, prepared[commits % len(prepared)])
        conn.execute("COMMIT")
        commits += 1
    elapsed = time.perf_counter() - started
    stored = conn.execute("SELECT count(*) FROM data").fetchone()[0]
    conn.close()
    return {
        "requests_per_s": commits / elapsed,
        "rows_per_s": stored / elapsed,
        "stored": stored,
        "acked": commits * BATCH,
    }

"""What a benchmark database holds: rows of a table, pages per reading."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def count_rows(db: Path, table: str, distinct: str | None = None) -> int:
    """Rows (or distinct values of a column) in a table; 0 when it does not exist."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        what = f'DISTINCT "{distinct}"' if distinct else "*"
        return conn.execute(f'SELECT count({what}) FROM "{table}"').fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def bytes_per_reading(db: Path) -> dict[str, float]:
    """Pages the readings table and its indexes take, per stored reading."""
    conn = sqlite3.connect(db, timeout=60)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = 'readings')"
        ).fetchone()[0]
        count = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        conn.close()
    return {"readings": count, "bytes": size, "bytes_per_reading": size / max(count, 1)}

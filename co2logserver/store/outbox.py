"""The durable outbox: what is to be forwarded, written in the ingest transaction.

One item per stored legacy row or per stored observation, keyed by the senseBox it
belongs to, so the forwarder can batch per box and park one box's refusals alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, case, func, insert, select

from co2logserver.store.schema import forwarder_status, outbox

LEGACY = "legacy"
READINGS = "readings"


def enqueue(conn: Connection, kind: str, items: Iterable[tuple[str, Any]]) -> int:
    """Add ``(box, payload)`` items of ``kind``; returns how many were added."""
    now = int(time.time())
    rows = [
        {
            "kind": kind,
            "box": str(box),
            "payload": json.dumps(payload, default=str, separators=(",", ":")),
            "created_at": now,
            "attempts": 0,
        }
        for box, payload in items
    ]
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


def legacy_items(
    rows: Iterable[Mapping[str, Any]], box_column: str, default_box: str
) -> list[tuple[str, dict]]:
    """One item per stored legacy row, keyed by the row's box column value."""
    items = []
    for row in rows:
        box = row.get(box_column)
        if box is None or box == "":
            box = default_box
        items.append((str(box), dict(row)))
    return items


def backlog(conn: Connection) -> dict[str, int]:
    """How many items wait to be sent and how many are parked for good."""
    counts = dict(
        conn.execute(
            select(
                case((outbox.c.parked_at.is_(None), "pending"), else_="parked"),
                func.count(),
            ).group_by(1)
        ).all()
    )
    return {"pending": counts.get("pending", 0), "parked": counts.get("parked", 0)}


def status(conn: Connection, name: str = "opensensemap") -> dict[str, Any]:
    """Backlog plus the forwarder's last success and last error (UNIX seconds)."""
    row = conn.execute(
        select(forwarder_status).where(forwarder_status.c.name == name)
    ).first()
    return {
        **backlog(conn),
        "last_success_at": row.last_success_at if row else None,
        "last_error_at": row.last_error_at if row else None,
        "last_error": row.last_error if row else None,
    }

"""The durable outbox: what is to be forwarded, written in the ingest transaction.

One item per stored legacy row or per stored observation, keyed by the senseBox it
belongs to, so the forwarder can batch per box and park one box's refusals alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, select, update
from sqlalchemy import delete as sa_delete

from co2logserver.store.schema import forwarder_status, leases, outbox

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


def pending(conn: Connection, limit: int, skip_boxes: Iterable[str] = ()) -> list[Row]:
    """The oldest items not parked, skipping boxes known to wait."""
    statement = select(outbox).where(outbox.c.parked_at.is_(None))
    skip = list(skip_boxes)
    if skip:
        statement = statement.where(outbox.c.box.not_in(skip))
    return list(conn.execute(statement.order_by(outbox.c.id).limit(limit)))


def delete(conn: Connection, ids: Sequence[int]) -> None:
    """Remove items that the OpenSenseMap accepted."""
    conn.execute(sa_delete(outbox).where(outbox.c.id.in_(list(ids))))


def park(conn: Connection, ids: Sequence[int], reason: str) -> None:
    """Keep refused items for good with the reason; they are never sent again."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(list(ids)))
        .values(parked_at=int(time.time()), parked_reason=reason[:2000])
    )


def note_attempt(conn: Connection, ids: Sequence[int], reason: str | None) -> None:
    """Count a failed attempt and say why the items wait."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(list(ids)))
        .values(attempts=outbox.c.attempts + 1, waiting_reason=reason)
    )


def record(conn: Connection, error: str | None, name: str = "opensensemap") -> None:
    """Remember the last success (``error`` None) or the last error."""
    now = time.time()
    values = (
        {"last_success_at": now}
        if error is None
        else {"last_error_at": now, "last_error": error[:2000]}
    )
    updated = conn.execute(
        update(forwarder_status).where(forwarder_status.c.name == name).values(**values)
    )
    if not updated.rowcount:
        conn.execute(insert(forwarder_status).values(name=name, **values))


def acquire_lease(conn: Connection, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease ``name`` unless another holder's is still valid."""
    now = time.time()
    row = conn.execute(select(leases).where(leases.c.name == name)).first()
    if row is None:
        conn.execute(
            insert(leases).values(name=name, holder=holder, expires_at=now + seconds)
        )
        return True
    if row.holder != holder and row.expires_at > now:
        return False
    conn.execute(
        update(leases)
        .where(leases.c.name == name)
        .values(holder=holder, expires_at=now + seconds)
    )
    return True


def release_lease(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up so another process may take it at once."""
    conn.execute(
        sa_delete(leases).where((leases.c.name == name) & (leases.c.holder == holder))
    )

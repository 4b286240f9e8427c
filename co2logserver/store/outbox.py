"""The durable outbox: what is to be forwarded, written in the ingest transaction.

One item per stored legacy row or per stored observation, keyed by the senseBox it
belongs to, so the forwarder can batch per box and park one box's refusals alone.
The forwarder's lease and its last success and error live here too: everything the
forwarder keeps is in the database, nothing in its memory that a restart would lose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects import postgresql, sqlite

from co2logserver.store.prepared import Prepared
from co2logserver.store.schema import forwarder_status, leases, outbox, sensors

LEGACY = "legacy"
READINGS = "readings"
#: Status row of the OpenSenseMap forwarder in ``forwarder_status``.
STATUS_NAME = "opensensemap"
#: Ids per ``IN (...)`` list, well below SQLite's limit of bound parameters.
ID_CHUNK = 500
#: Item keys read per query while looking past boxes that wait.
SCAN_PAGE = 5000
#: Longest reason text kept per item or in the status.
MAX_REASON = 2000

ENQUEUE = Prepared(
    insert(outbox).values(
        kind=bindparam("kind"),
        box=bindparam("box"),
        payload=bindparam("payload"),
        created_at=bindparam("created_at"),
        attempts=bindparam("attempts"),
    )
)


def enqueue(conn: Connection, kind: str, items: Iterable[tuple[str, Any]]) -> int:
    """Add ``(box, payload)`` items of ``kind``; returns how many were added.

    Call it inside the transaction that stores the data, so that both are kept or
    neither is.
    """
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
        ENQUEUE.execute_many(conn, rows)
    return len(rows)


def legacy_items(
    rows: Iterable[Mapping[str, Any]], box_column: str, default_box: str
) -> list[tuple[str, dict]]:
    """One item per stored legacy row, keyed by the row's box column value."""
    column = box_column.lower()  # stored column names are lower case
    items = []
    for row in rows:
        box = row.get(column)
        if box is None or box == "":
            box = default_box
        items.append((str(box), dict(row)))
    return items


# --------------------------------------------------------------------------------------
# Status: what /, /health and /metrics show
# --------------------------------------------------------------------------------------


def backlog(conn: Connection) -> dict[str, int]:
    """How many items wait to be sent and how many are parked for good."""
    total, parked = conn.execute(
        select(func.count(), func.count(outbox.c.parked_at))
    ).one()
    return {"pending": total - parked, "parked": parked}


def oldest_pending_at(conn: Connection) -> int | None:
    """When the oldest item still to be sent was stored (UNIX seconds), or None."""
    return conn.execute(
        select(outbox.c.created_at)
        .where(outbox.c.parked_at.is_(None))
        .order_by(outbox.c.id)
        .limit(1)
    ).scalar()


def status(conn: Connection, name: str = STATUS_NAME) -> dict[str, Any]:
    """Backlog plus the forwarder's last success and last error (UNIX seconds).

    Keys: ``pending``, ``parked``, ``oldest_pending_at``, ``last_success_at``,
    ``last_error_at`` and ``last_error`` (a text for the operator, free of
    credentials; pages that are public should leave it out).
    """
    row = conn.execute(
        select(forwarder_status).where(forwarder_status.c.name == name)
    ).first()
    return {
        **backlog(conn),
        "oldest_pending_at": oldest_pending_at(conn),
        "last_success_at": row.last_success_at if row else None,
        "last_error_at": row.last_error_at if row else None,
        "last_error": row.last_error if row else None,
    }


def record(conn: Connection, error: str | None, name: str = STATUS_NAME) -> None:
    """Remember the last success (``error`` None) or the last error."""
    now = time.time()
    values = (
        {"last_success_at": now}
        if error is None
        else {"last_error_at": now, "last_error": error[:MAX_REASON]}
    )
    updated = conn.execute(
        update(forwarder_status).where(forwarder_status.c.name == name).values(**values)
    )
    if not updated.rowcount:
        conn.execute(insert(forwarder_status).values(name=name, **values))


# --------------------------------------------------------------------------------------
# Draining
# --------------------------------------------------------------------------------------


def pending(
    conn: Connection, limit: int, skip: Collection[tuple[str, str]] = ()
) -> list[Row]:
    """The oldest ``limit`` items not parked, leaving out ``(kind, box)`` in ``skip``.

    Boxes that wait (for a location) are left out in Python rather than in SQL, so
    that any number of them fits in one round without an ``IN`` list too long for
    the database.
    """
    if not skip:
        statement = select(outbox).where(outbox.c.parked_at.is_(None))
        return list(conn.execute(statement.order_by(outbox.c.id).limit(limit)))
    ids = wanted_ids(conn, limit, skip)
    rows: list[Row] = []
    for part in chunked(ids):
        rows += conn.execute(select(outbox).where(outbox.c.id.in_(part))).all()
    return sorted(rows, key=lambda row: row.id)


def wanted_ids(
    conn: Connection, limit: int, skip: Collection[tuple[str, str]]
) -> list[int]:
    """Ids of the oldest pending items whose box is not in ``skip``."""
    ids: list[int] = []
    after = 0
    while len(ids) < limit:
        keys = conn.execute(
            select(outbox.c.id, outbox.c.kind, outbox.c.box)
            .where(outbox.c.parked_at.is_(None), outbox.c.id > after)
            .order_by(outbox.c.id)
            .limit(SCAN_PAGE)
        ).all()
        if not keys:
            break
        ids += [key.id for key in keys if (key.kind, key.box) not in skip]
        after = keys[-1].id
    return ids[:limit]


def located_sensors(conn: Connection, suids: Iterable[str]) -> set[str]:
    """The SUIDs among ``suids`` whose sensor has a location now."""
    found: set[str] = set()
    for part in chunked(list(suids)):
        found.update(
            conn.execute(
                select(sensors.c.suid).where(
                    sensors.c.suid.in_(part),
                    sensors.c.latitude.is_not(None),
                    sensors.c.longitude.is_not(None),
                )
            ).scalars()
        )
    return found


def delete(conn: Connection, ids: Sequence[int]) -> None:
    """Remove items that the OpenSenseMap accepted."""
    for part in chunked(ids):
        conn.execute(sa_delete(outbox).where(outbox.c.id.in_(part)))


def park(conn: Connection, ids: Sequence[int], reason: str) -> None:
    """Keep refused items for good with the reason; they are never sent again."""
    now = int(time.time())
    for part in chunked(ids):
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(part))
            .values(parked_at=now, parked_reason=reason[:MAX_REASON])
        )


def note_attempt(conn: Connection, ids: Sequence[int], reason: str | None) -> None:
    """Count a failed attempt and say why the items wait."""
    text = None if reason is None else reason[:MAX_REASON]
    for part in chunked(ids):
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(part))
            .values(attempts=outbox.c.attempts + 1, waiting_reason=text)
        )


def chunked(ids: Sequence[Any]) -> Iterator[list[Any]]:
    """Consecutive slices of at most :data:`ID_CHUNK` values."""
    for start in range(0, len(ids), ID_CHUNK):
        yield list(ids[start : start + ID_CHUNK])


# --------------------------------------------------------------------------------------
# The lease: one forwarder across all workers and hosts
# --------------------------------------------------------------------------------------


def acquire_lease(conn: Connection, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease ``name`` unless another holder's is still valid.

    One conditional UPDATE (then an INSERT that gives way on conflict) decides, so
    two processes asking at once never both get it, on SQLite or PostgreSQL.
    Expiry times are UNIX seconds: hosts sharing a database need synchronised clocks.
    """
    now = time.time()
    # RETURNING, not rowcount: psycopg reports -1 for a skipped INSERT.
    renewed = conn.execute(
        update(leases)
        .where(
            leases.c.name == name,
            or_(leases.c.holder == holder, leases.c.expires_at <= now),
        )
        .values(holder=holder, expires_at=now + seconds)
        .returning(leases.c.name)
    ).first()
    if renewed is not None:
        return True
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    created = conn.execute(
        dialect.insert(leases)
        .values(name=name, holder=holder, expires_at=now + seconds)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(leases.c.name)
    ).first()
    return created is not None


def release_lease(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up so another process may take it at once."""
    conn.execute(
        sa_delete(leases).where((leases.c.name == name) & (leases.c.holder == holder))
    )


def lease_holder(conn: Connection, name: str) -> str | None:
    """Who holds the lease ``name`` now, if anyone."""
    return conn.execute(
        select(leases.c.holder).where(
            leases.c.name == name, leases.c.expires_at > time.time()
        )
    ).scalar()

"""SQL of OpenSmogHash2's window (SPEC §11): the ``seq`` values a registration used.

The rules are :mod:`co2logserver.replay` (pure) and :mod:`co2logserver.verify`;
this is where the window's rows are read and written, in the ingest transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from co2logserver.store.prepared import driver_rows, placeholders
from co2logserver.store.schema import signed_seqs


def signed_window(conn: Connection, registration_id: int) -> dict[int, str]:
    """A registration's OpenSmogHash2 window, ``{seq: hash}``; empty: never used."""
    rows = conn.execute(
        select(signed_seqs.c.seq, signed_seqs.c.hash).where(
            signed_seqs.c.registration_id == registration_id
        )
    )
    return {seq: digest for seq, digest in rows}


def remember_seq(
    conn: Connection,
    registration_id: int,
    seq: int,
    digest: str,
    forget_upto: int | None,
) -> str | None:
    """Record an accepted ``seq``; return ``None``, or the hash stored first for it.

    ``ON CONFLICT DO NOTHING`` makes two concurrent requests with one ``seq`` safe
    on PostgreSQL too: the second waits for the first to commit, inserts nothing
    and is then judged against the hash the first one stored.
    """
    sql = (
        "INSERT INTO signed_seqs (registration_id, seq, hash) VALUES "
        f"({placeholders(conn, 3)}) ON CONFLICT DO NOTHING RETURNING seq"
    )
    if not driver_rows(conn, sql, [registration_id, seq, digest]):
        row = conn.execute(
            select(signed_seqs.c.hash).where(
                (signed_seqs.c.registration_id == registration_id)
                & (signed_seqs.c.seq == seq)
            )
        ).first()
        return row[0] if row else ""  # pruned meanwhile: below the window
    if forget_upto is None:
        return None
    conn.execute(
        delete(signed_seqs).where(
            (signed_seqs.c.registration_id == registration_id)
            & (signed_seqs.c.seq <= forget_upto)
        )
    )
    return None

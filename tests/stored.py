"""What the database holds, counted from outside the server under test.

The fuzz tests assert that a refused request stores nothing: they count the rows
of every table (the legacy ``data`` table once it exists, sensors, registrations,
readings, the outbox …) before and after each request, on a connection of their own.
Outage tests wait, within a bound, for the spool to be applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, func, inspect, select, table

#: Tables that record refusals on purpose: an owner sees their sensors' rejected
#: requests (SPEC §12), so a refused request may add a row there and nowhere else.
REFUSAL_LOGS = frozenset({"rejected_requests"})


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table of the database behind ``engine``, the refusal log left out."""
    with engine.connect() as conn:
        return {
            name: conn.execute(
                select(func.count()).select_from(table(name))
            ).scalar_one()
            for name in inspect(conn).get_table_names()
            if name not in REFUSAL_LOGS
        }


def eventually(condition: Callable[[], bool], seconds: float = 30) -> bool:
    """Poll ``condition`` (say, a spool applied) until it holds or ``seconds`` pass."""
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.2)
    return True

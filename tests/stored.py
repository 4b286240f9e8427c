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


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table of the database behind ``engine``."""
    with engine.connect() as conn:
        return {
            name: conn.execute(
                select(func.count()).select_from(table(name))
            ).scalar_one()
            for name in inspect(conn).get_table_names()
        }


def eventually(condition: Callable[[], bool], seconds: float = 30) -> bool:
    """Poll ``condition`` (say, a spool applied) until it holds or ``seconds`` pass."""
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.2)
    return True

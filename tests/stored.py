"""What the database holds, counted from outside the server under test.

The fuzz tests assert that a refused request stores nothing: they count the rows
of every table (the legacy ``data`` table once it exists, sensors, registrations,
readings, the outbox …) before and after each request, on a connection of their own.
"""

from __future__ import annotations

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

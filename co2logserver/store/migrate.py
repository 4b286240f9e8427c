"""Bringing tables of earlier versions up to date, beyond what ``create_all`` does.

``create_all`` makes missing tables only; a column added to an existing table later
is added here, in the schema transaction of :meth:`Store.ensure_schema`.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, inspect

from co2logserver.store import aliases, counters

log = logging.getLogger("co2logserver.store")


#: Columns of ``sensors`` that databases of earlier versions lack, with their DDL.
ADDED_SENSOR_COLUMNS = {"alias": "TEXT"}


def add_missing_sensor_columns(conn: Connection) -> None:
    """Bring a 1.0-dev ``sensors`` table up to date (SPEC §9's ``alias``).

    ``create_all`` makes missing tables only; a column added later is added here,
    in the schema transaction, with its index.
    """
    present = {column["name"] for column in inspect(conn).get_columns("sensors")}
    missing = [name for name in ADDED_SENSOR_COLUMNS if name not in present]
    for name in missing:
        conn.exec_driver_sql(
            f"ALTER TABLE sensors ADD COLUMN {name} {ADDED_SENSOR_COLUMNS[name]}"
        )
        log.info("database: added the column sensors.%s", name)
    if "alias" in missing:
        conn.exec_driver_sql("CREATE INDEX ix_sensors_alias ON sensors (alias)")


def fill_list_tables(
    conn: Connection, before: set[str], data_name: str, upload_column: str
) -> None:
    """Fill the lookup and counter tables of issue #18 once, when they are new.

    ``before`` are the tables the database had before ``create_all``: a table made
    just now gets the rows the database holds already (a 0.1.2 file keeps showing
    its upload counts; sensors of 1.0-dev keep being found by alias). Runs in the
    schema transaction, so a crash leaves either both the table and its rows or
    neither.
    """
    if "alias_keys" not in before and "sensors" in before:
        aliases.fill_from_sensors(conn)
    if "upload_totals" not in before and data_name in before:
        counters.fill_from_data(conn, data_name, upload_column, time.time())

"""The ``?alias=`` lookup as an exact match on an index.

A lookup finds a sensor when it equals a contiguous run of the ``:``-separated
parts of the sensor's alias, case-insensitively: ``airrohr:esp8266-1:SDS``,
``esp8266-1:SDS`` and the node ``esp8266-1`` all find ``airrohr:esp8266-1:SDS``.
Answered with ``LIKE '%:…'`` that read every sensor (20 ms at 15,000); here every
run is a key of ``alias_keys``, written when the alias is, so a lookup is a range
scan of that table's primary key, already in SUID order for paging.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from co2logserver.store.schema import alias_keys, sensors

log = logging.getLogger("co2logserver.store")

#: Parts of an alias that get runs of their own; the rest is one last part (an
#: alias of n parts has n(n+1)/2 keys, so a pathological one cannot flood the table).
MAX_PARTS = 12


def keys_of(alias: str) -> set[str]:
    """Every lookup that finds ``alias``: the runs of its parts, lower-cased."""
    parts = alias.lower().split(":", MAX_PARTS - 1)
    return {
        ":".join(parts[start:end])
        for start in range(len(parts))
        for end in range(start + 1, len(parts) + 1)
    }


def key_of(lookup: str) -> str:
    """The key a ``?alias=`` value looks up."""
    return lookup.lower()


def set_alias(conn: Connection, suid: str, alias: str | None) -> None:
    """Replace the keys of ``suid`` by those of its new ``alias``."""
    conn.execute(delete(alias_keys).where(alias_keys.c.suid == suid))
    if alias:
        conn.execute(
            alias_keys.insert(),
            [{"key": key, "suid": suid} for key in sorted(keys_of(alias))],
        )


def add_keys(conn: Connection, rows: Iterable[tuple[str, str]]) -> int:
    """Insert the keys of ``(suid, alias)`` rows (for the one-time fill)."""
    values = [
        {"key": key, "suid": suid}
        for suid, alias in rows
        if alias
        for key in sorted(keys_of(alias))
    ]
    for start in range(0, len(values), 5000):
        conn.execute(alias_keys.insert(), values[start : start + 5000])
    return len(values)


def fill_from_sensors(conn: Connection) -> None:
    """Key the aliases of the sensors there are (once, with the new table)."""
    rows = conn.execute(
        select(sensors.c.suid, sensors.c.alias).where(sensors.c.alias.is_not(None))
    ).all()
    count = add_keys(conn, [(suid, alias) for suid, alias in rows])
    if count:
        log.info("database: keyed the sensors' aliases (%d keys)", count)


def matching_suids(lookup: str):
    """The SUIDs whose alias a ``?alias=`` lookup finds, as a subquery."""
    return select(alias_keys.c.suid).where(alias_keys.c.key == key_of(lookup))

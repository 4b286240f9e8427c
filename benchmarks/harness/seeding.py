"""Filling a database through the project's own store, for the read benchmarks.

One owner for what ``lists.py``, ``reads_vs_ingest.py`` and ``scale.py`` seed:
protocol sensors (a registration, public metadata and an airrohr alias each, so
``?alias=`` and the list search find them), their readings through
``store.sensors.insert_reading_rows`` (which keeps the hourly rollups in the same
transaction, as ingest does) with the sensors' counters, and legacy rows through
``/upload``, so ``/`` and ``/download`` have data. Only the HTTP round trip and the
parsing of a sensor post are skipped: building a large database is the slow part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from co2logserver.store import get_store
from co2logserver.store import sensors as sensor_sql

#: Seconds between an airrohr node's posts.
PERIOD = 145
#: PM10, TEMP and HUM: the three quantities a node posts (co2logserver.readings).
TYPES = (5, 8, 9)
#: Readings per transaction when filling histories.
TRANSACTION_READINGS = 60_000


def suid(n: int) -> str:
    """The SUID of the ``n``-th seeded sensor (sorted as ``n`` is)."""
    return f"00000000-0000-4000-8000-{n:012d}"


def alias(n: int) -> str:
    """The airrohr alias of the ``n``-th seeded sensor."""
    return f"airrohr:esp8266-{n}:SDS"


def add_sensor(conn, n: int, now: int) -> int:
    """Register the ``n``-th sensor (rogue, with model, location and alias); its
    registration id."""
    registration = sensor_sql.new_registration(conn, suid(n), False, None, now)
    metadata = {"model": f"SDS0{n % 7}", "latitude": 48 + n / 1e5, "longitude": 9.0}
    sensor_sql.save_sensor(conn, suid(n), registration, False, metadata, now, False)
    sensor_sql.describe_device(conn, suid(n), None, alias(n), None, now)
    return registration


def value(n: int, ts: int, kind: int) -> float:
    """A plausible, varying reading (the rollups' min/max/mean differ per hour)."""
    return float((ts // 60 + n * 7 + kind) % 113) / 3 + (20.0 if kind == 8 else 0.0)


def post_times(n: int, start: int, end: int) -> range:
    """The times the ``n``-th sensor posted in ``[start, end)``: every 145 s, with
    a phase of its own so the network's posts spread over the period."""
    first = start + n % PERIOD
    return range(first, end, PERIOD)


def add_sensors(app, first: int, count: int, now: int) -> list[int]:
    """Register sensors ``first`` .. ``first + count - 1`` (1,000 a transaction);
    their registration ids."""
    store = get_store(app)
    registrations: list[int] = []
    for at in range(first, first + count, 1000):
        with store.transaction() as conn:
            registrations += [
                add_sensor(conn, n, now)
                for n in range(at, min(at + 1000, first + count))
            ]
    return registrations


def seed_sensors(
    app,
    first: int,
    count: int,
    start: int,
    end: int,
    types: Sequence[int] = TYPES,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Sensors ``first`` .. ``first + count - 1``, each posting ``types`` every
    145 s over ``[start, end)``; returns the readings stored.

    Readings go in sensor by sensor, in time order (the order of the readings'
    primary key), about :data:`TRANSACTION_READINGS` a transaction, each with the
    sensors' counters. ``progress(sensors_done, readings_stored)`` is called after
    each transaction.
    """
    store = get_store(app)
    registrations = add_sensors(app, first, count, end)
    window = max(1, TRANSACTION_READINGS // len(types)) * PERIOD
    stored = 0
    pending: list[tuple[int, int, int, float]] = []
    keys: dict[str, list[tuple[int, int]]] = {}

    def flush(done: int) -> None:
        nonlocal stored, pending, keys
        with store.transaction() as conn:
            stored += len(sensor_sql.insert_reading_rows(conn, pending))
            sensor_sql.count_new_readings_of(conn, list(keys.items()))
        pending, keys = [], {}
        if progress is not None:
            progress(done, stored)

    for done, (n, registration) in enumerate(
        zip(range(first, first + count), registrations, strict=True), 1
    ):
        for at in range(start, end, window):
            times = post_times(n, at, min(at + window, end))
            pending += [
                (registration, ts, kind, value(n, ts, kind))
                for ts in times
                for kind in types
            ]
            keys.setdefault(suid(n), []).extend(
                (ts, kind) for ts in times for kind in types
            )
            if len(pending) >= TRANSACTION_READINGS:
                flush(done)
    if pending or keys:
        flush(count)
    return stored


def upload_legacy(app, rows: int, per_post: int = 10_000) -> None:
    """``rows`` legacy rows (a CO2 value and a box name) through ``/upload``."""
    client = app.test_client()
    for start in range(0, rows, per_post):
        size = min(per_post, rows - start)
        body = {"co2": [400 + i % 50 for i in range(size)], "box": ["b"] * size}
        answer = client.post("/upload", json=body)
        assert answer.status_code == 200, answer.data[:200]

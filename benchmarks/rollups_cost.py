"""What the hourly rollups cost at ingest and what they save at read time (issue 18).

    python benchmarks/rollups_cost.py                  # SQLite, about a minute
    python benchmarks/rollups_cost.py --db postgresql://...  # an empty database
    python benchmarks/rollups_cost.py --sensors 20 --days 180

In one process, on the Flask test client (no HTTP server; the request's own cost):

* **ingest**: sensor posts of one observation with three readings (``rogue-1x3``)
  and stored batches of 1,000 readings, each with the rollups maintained and with
  ``store.rollups.add_new_readings`` replaced by a no-op, in alternating rounds;
* **read**: ``aggregate=1h`` and ``aggregate=1d`` of one sensor over the whole
  history (one reading per type every 145 s, as airrohr sends), from the raw
  readings and from the rollups (warm medians), through the store and the API.

Prints a Markdown table. Everything it writes goes to a temporary SQLite file (or
the database given, which it fills: use an empty one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from co2logserver import create_app  # noqa: E402
from co2logserver.store import get_store, history, rollups  # noqa: E402
from co2logserver.store import sensors as sensor_sql  # noqa: E402
from co2logserver.store.selection import ReadingSelection  # noqa: E402

HOUR = 3600
PERIOD = 145  # seconds between an airrohr node's posts
TYPES = (5, 8, 9)  # PM10, TEMP, HUM


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--sensors", type=int, default=10)
    parser.add_argument("--days", type=int, default=90, help="history per sensor")
    parser.add_argument("--posts", type=int, default=300, help="posts per round")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of each kind")
    parser.add_argument("--repeats", type=int, default=7, help="runs of a query")
    return parser.parse_args()


@contextmanager
def rollups_off(enabled: bool):
    """Ingest without maintaining the rollups (the cost's baseline)."""
    if enabled:
        yield
        return
    original = rollups.add_new_readings
    rollups.add_new_readings = lambda conn, rows: None  # type: ignore[assignment]
    try:
        yield
    finally:
        rollups.add_new_readings = original


def register(client) -> tuple[str, int]:
    """A rogue sensor made by its first post; its SUID and registration."""
    suid = str(uuid.uuid4())
    body = json.dumps([{"timestamp": int(time.time()), "readings": {"PM10": 1.0}}])
    response = client.post(f"/rogue/v1/sensors/{suid}/readings", data=body)
    assert response.status_code == 200, response.data
    store = get_store(client.application)
    with store.reading() as conn:
        row = sensor_sql.get_sensor(conn, suid)
    assert row is not None
    return suid, int(row.registration_id)


def posts_per_second(client, suid: str, start: int, count: int) -> float:
    """``count`` posts of one observation with three readings; posts per second."""
    url = f"/rogue/v1/sensors/{suid}/readings"
    bodies = [
        json.dumps(
            [
                {
                    "timestamp": start + i,
                    "readings": {"PM10": i % 50 + 0.5, "TEMP": 20.5, "HUM": 51.0},
                }
            ]
        )
        for i in range(count)
    ]
    began = time.perf_counter()
    for body in bodies:
        response = client.post(url, data=body)
        assert response.status_code == 200, response.data
    return count / (time.perf_counter() - began)


def batches_per_second(store, registration: int, start: int, batches: int) -> float:
    """Stored batches of 1,000 readings (one transaction each); readings per second."""
    made = [
        [
            (registration, start + b * 400 + i // 3, TYPES[i % 3], float(i % 97))
            for i in range(1000)
        ]
        for b in range(batches)
    ]
    began = time.perf_counter()
    for rows in made:
        with store.transaction() as conn:
            sensor_sql.insert_reading_rows(conn, rows)
    return batches * 1000 / (time.perf_counter() - began)


def ingest_cost(app, args) -> list[tuple[str, float, float]]:
    """Alternating rounds with and without rollups; medians of each."""
    client = app.test_client()
    store = get_store(app)
    suid, registration = register(client)
    start = int(time.time()) - 30 * 86400
    results: dict[tuple[str, bool], list[float]] = {}
    offset = 0
    for round_ in range(args.rounds):
        # Alternating which goes first cancels a trend of the machine's load.
        for enabled in (True, False) if round_ % 2 else (False, True):
            with rollups_off(enabled):
                offset += args.posts + 1
                rate = posts_per_second(client, suid, start + offset, args.posts)
                results.setdefault(("posts/s, rogue-1x3", enabled), []).append(rate)
                offset += 400 * 10
                rate = batches_per_second(store, registration, start + offset, 10)
                results.setdefault(
                    ("readings/s, 1000-row batches", enabled), []
                ).append(rate)
    names = sorted({name for name, _ in results})
    return [
        (
            name,
            statistics.median(results[(name, True)]),
            statistics.median(results[(name, False)]),
        )
        for name in names
    ]


def fill_history(app, args) -> list[str]:
    """``--sensors`` sensors with ``--days`` of readings ending at the last hour."""
    client = app.test_client()
    store = get_store(app)
    now = int(time.time())
    end = now - now % HOUR
    start = end - args.days * 86400
    suids = []
    for _ in range(args.sensors):
        suid, registration = register(client)
        suids.append(suid)
        rows = [
            (registration, ts, kind, float((ts // 60 + kind) % 113) / 3)
            for ts in range(start, end, PERIOD)
            for kind in TYPES
        ]
        for at in range(0, len(rows), 6000):
            with store.transaction() as conn:
                sensor_sql.insert_reading_rows(conn, rows[at : at + 6000])
    return suids


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Warm median of ``run``'s wall time."""
    run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def read_speed(app, suids: list[str], args) -> list[tuple[str, float, float]]:
    """Raw against rollups for one sensor's whole history."""
    store = get_store(app)
    suid = suids[len(suids) // 2]
    rows = []
    for name, interval in (("aggregate=1h", HOUR), ("aggregate=1d", 86400)):

        def raw(interval=interval):
            with store.reading() as conn:
                statement = history.aggregate_readings(ReadingSelection(suid), interval)
                return list(conn.execute(statement))

        def rolled(interval=interval):
            with store.reading() as conn:
                return rollups.aggregate_rollups(conn, ReadingSelection(suid), interval)

        assert len(raw()) == len(rolled())
        rows.append(
            (
                f"store {name}, {args.days} d",
                median_seconds(raw, args.repeats),
                median_seconds(rolled, args.repeats),
            )
        )
    client = app.test_client()
    url = f"/v1/sensors/{suid}/readings?aggregate=1h"
    api = median_seconds(lambda: client.get(url), args.repeats)
    with built_off(store):
        raw_api = median_seconds(lambda: client.get(url), args.repeats)
    rows.append((f"GET …?aggregate=1h, {args.days} d", raw_api, api))
    return rows


@contextmanager
def built_off(store):
    """The API's raw path: mark the rollups not built for a while."""
    with store.transaction() as conn:
        conn.exec_driver_sql("UPDATE rollups_state SET built = false")
    try:
        yield
    finally:
        with store.transaction() as conn:
            conn.exec_driver_sql("UPDATE rollups_state SET built = true")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or os.path.join(tmp, "rollups.sqlite")
        app = create_app(
            {
                "DB": db,
                "RATELIMIT_ENABLED": False,
                "SPOOL_DIR": tmp,
                "OSEM_UPLOAD": False,
                # Filling writes 6,000 readings per transaction (PostgreSQL's
                # default budget for a whole write transaction is 5 s).
                "DB_TIMEOUT": 120,
            }
        )
        kind = "PostgreSQL" if "://" in db else "SQLite"
        began = time.perf_counter()
        suids = fill_history(app, args)
        with get_store(app).reading() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM readings").scalar()
        filled = time.perf_counter() - began
        reads = read_speed(app, suids, args)
        ingest = ingest_cost(app, args)
        get_store(app).dispose()
    print(
        f"\n{kind}: {args.sensors} sensors x {args.days} d, {stored:,} readings "
        f"(filled in {filled:.0f} s)\n"
    )
    print("| ingest | with rollups | without | cost |")
    print("| --- | ---: | ---: | ---: |")
    for name, with_, without in ingest:
        print(f"| {name} | {with_:,.0f} | {without:,.0f} | {1 - with_ / without:.1%} |")
    print("\n| read, one sensor | raw readings | rollups | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name, raw, rolled in reads:
        print(f"| {name} | {raw * 1000:.1f} ms | {rolled * 1000:.1f} ms | "
              f"{raw / rolled:.0f}x |")  # fmt: skip


if __name__ == "__main__":
    main()

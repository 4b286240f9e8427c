"""The lists at many sensors (issue #18): ``/v1/sensors`` pages, ``?alias=``, ``/``
and ``/sensors`` pages on a SQLite file of N sensors, timed in-process.

    python benchmarks/lists.py                      # 15,000 sensors, ~2 minutes
    python benchmarks/lists.py --sensors 2000 --legacy-rows 100000

The database is built through the project's own store (every sensor a protocol
device with an alias and a few readings of two types, plus legacy rows uploaded
through ``/upload``), then every request is repeated ``--repeat`` times (at most
``--budget`` seconds each) after one warm-up; the table gives the median time and
the size of the answer. Run it on an older checkout (``PYTHONPATH=<checkout>``) to
get the "before" column: requests the old code does not know (``page``, ``q``) are
answered there with its unpaged list.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from co2logserver import create_app
from co2logserver.store import get_store
from co2logserver.store import sensors as sensor_sql

BASE = 1_800_000_000


def suid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def seed(app, sensors: int, readings: int, legacy_rows: int) -> None:
    """N protocol sensors with ``readings`` posts of PM10 and TEMP each, then rows."""
    store = get_store(app)
    now = int(time.time())
    for start in range(0, sensors, 1000):
        with store.transaction() as conn:
            rows = []
            for n in range(start, min(start + 1000, sensors)):
                registration = sensor_sql.new_registration(
                    conn, suid(n), False, None, now
                )
                sensor_sql.save_sensor(
                    conn,
                    suid(n),
                    registration,
                    False,
                    {
                        "model": f"SDS0{n % 7}",
                        "latitude": 48 + n / 1e5,
                        "longitude": 9.0,
                    },
                    now,
                    False,
                )
                sensor_sql.describe_device(
                    conn, suid(n), None, f"airrohr:esp8266-{n}:SDS", None, now
                )
                for i in range(readings):
                    ts = now - 145 * i - n % 145
                    rows += [
                        (registration, ts, 5, float(i)),
                        (registration, ts, 8, 20.0),
                    ]
            for chunk in range(0, len(rows), 2000):
                sensor_sql.insert_reading_rows(conn, rows[chunk : chunk + 2000])
            counts = [
                (suid(n), [(now - n % 145, 5)] * (2 * readings))
                for n in range(start, min(start + 1000, sensors))
            ]
            sensor_sql.count_new_readings_of(conn, counts)
    client = app.test_client()
    for start in range(0, legacy_rows, 10_000):
        size = min(10_000, legacy_rows - start)
        body = {"co2": [400 + i % 50 for i in range(size)], "box": ["b"] * size}
        assert client.post("/upload", json=body).status_code == 200


def measure(client, url: str, repeat: int, budget: float) -> tuple[float, int]:
    """Median seconds and bytes of ``url`` (one warm-up first)."""
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.status_code, answer.data[:200])
    times = []
    deadline = time.monotonic() + budget
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(url)
        times.append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return statistics.median(times), len(answer.data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=15_000)
    parser.add_argument("--readings", type=int, default=20, help="posts per sensor")
    parser.add_argument("--legacy-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per URL")
    parser.add_argument("--db", help="SQLite file (built when missing)")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="co2-lists-")
    path = Path(args.db or f"{directory}/lists.sqlite")
    fresh = not path.exists()
    app = create_app({"DB": str(path), "RATELIMIT_ENABLED": False})
    if fresh:
        started = time.monotonic()
        seed(app, args.sensors, args.readings, args.legacy_rows)
        print(f"seeded {path} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    client = app.test_client()
    middle = suid(args.sensors // 2)
    node = f"esp8266-{args.sensors // 3}"
    urls = [
        "/v1/sensors?limit=100",
        f"/v1/sensors?limit=100&cursor={middle}",
        f"/v1/sensors?alias={node}",
        f"/v1/sensors?alias=airrohr:{node}:SDS",
        "/",
        "/sensors",
        f"/sensors?page={args.sensors // 100}",
        "/sensors?sort=suid&order=asc&page=2",
        f"/sensors?q={node}",
    ]
    print(f"| request ({args.sensors} sensors) | median ms | bytes |")
    print("| --- | ---: | ---: |")
    for url in urls:
        seconds, size = measure(client, url, args.repeat, args.budget)
        print(f"| `{url}` | {seconds * 1000:.2f} | {size} |", flush=True)
    get_store(app).dispose()


if __name__ == "__main__":
    main()

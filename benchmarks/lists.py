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

from harness import seeding

from co2logserver import create_app
from co2logserver.store import get_store

suid = seeding.suid


def seed(app, sensors: int, readings: int, legacy_rows: int) -> None:
    """N protocol sensors with ``readings`` posts of PM10 and TEMP each, then rows."""
    now = int(time.time())
    start = now - seeding.PERIOD * readings
    seeding.seed_sensors(app, 0, sensors, start, now, types=(5, 8))
    seeding.upload_legacy(app, legacy_rows)


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

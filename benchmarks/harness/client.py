"""A small HTTP client for setting up and for single long requests (not load).

Load comes from wrk. This client registers sensors, fills the footprint database
through the real HTTP path, and reads the streamed CSV export while watching the
worker's memory.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit


def request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, bytes]:
    """One request; returns status and body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def checked(status: int, body: bytes, what: str) -> bytes:
    """The body of a 2xx reply, else an error naming the request."""
    if not 200 <= status < 300:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:300]!r}")
    return body


def register_sensors(url: str, count: int, path: Path) -> None:
    """Register ``count`` secure sensors; write "SUID SECRET" lines to ``path``."""
    lines = []
    for _ in range(count):
        suid = str(uuid.uuid4())
        status, body = request(url, "PUT", f"/v1/sensors/{suid}", b"{}")
        secret = checked(status, body, "register a sensor").decode()
        lines.append(f"{suid} {secret}\n")
    path.write_text("".join(lines))


def fake_sensors(count: int, path: Path) -> None:
    """Sensors with made-up SECRETs, for the ceiling (which checks nothing)."""
    lines = [
        f"{uuid.uuid4()} {uuid.uuid4().hex}{uuid.uuid4().hex}\n" for _ in range(count)
    ]
    path.write_text("".join(lines))


def legacy_batch(first: int, rows: int) -> bytes:
    """A 100-row JSON upload with the values lua/ingest.lua sends."""
    times = list(range(first, first + rows))
    return json.dumps(
        {
            "time": times,
            "co2": [400 + t % 600 for t in times],
            "temperature": [(t % 300) / 10 for t in times],
            "humidity": [30 + t % 60 + 0.5 for t in times],
        },
        separators=(",", ":"),
    ).encode()


def readings_batch(first_ts: int, observations: int) -> bytes:
    """One sensor's observations of PM10, PM2_5 and TEMP, one second apart."""
    items = [
        {
            "timestamp": ts,
            "readings": {
                "PM10": float(10 + ts % 40),
                "PM2_5": float(5 + ts % 20),
                "TEMP": (ts % 300) / 10,
            },
        }
        for ts in range(first_ts, first_ts + observations)
    ]
    return json.dumps(items, separators=(",", ":")).encode()


def post_all(url: str, jobs: list[tuple[str, bytes, str]], clients: int = 2) -> int:
    """POST every ``(path, body, content type)`` job; return the rows acknowledged.

    :raise RuntimeError: on the first non-2xx reply.
    """

    def post(job: tuple[str, bytes, str]) -> int:
        path, body, mimetype = job
        status, reply = request(url, "POST", path, body, {"Content-Type": mimetype})
        reply = checked(status, reply, f"POST {path}")
        return json.loads(reply).get("saved-in-db", 0) if reply else 0

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(post, jobs))


def fill_legacy(url: str, rows: int, batch: int = 100) -> int:
    """Upload ``rows`` legacy rows in ``batch``-row JSON requests."""
    jobs = [
        ("/upload", legacy_batch(1_500_000_000 + start, batch), "application/json")
        for start in range(0, rows, batch)
    ]
    return post_all(url, jobs)


def fill_readings(
    url: str, sensors: int, requests_per_sensor: int = 34, observations: int = 100
) -> list[str]:
    """Post rogue readings round-robin over ``sensors``; return their SUIDs.

    Each sensor gets ``requests_per_sensor * observations * 3`` readings (10,200 by
    default), in time order per sensor, interleaved across sensors like a network.
    """
    suids = [str(uuid.uuid4()) for _ in range(sensors)]
    jobs = [
        (
            f"/rogue/v1/sensors/{suid}/readings",
            readings_batch(1_600_000_000 + k * observations, observations),
            "application/json",
        )
        for k in range(requests_per_sensor)
        for suid in suids
    ]
    post_all(url, jobs)
    return suids


def stream_get(url: str, path: str) -> Iterator[bytes]:
    """Yield a reply's body in 64 KiB pieces as it arrives."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {reply.status}")
        while chunk := reply.read(65536):
            yield chunk
    finally:
        conn.close()


def timed_export(url: str, path: str, rss: Callable[[], int]) -> dict[str, float]:
    """Read a streamed export; return seconds, lines and the worker's RSS growth."""
    baseline = rss()
    peak = [baseline]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    lines = sum(chunk.count(b"\n") for chunk in stream_get(url, path))
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    return {
        "seconds": elapsed,
        "rows": lines - 1,  # the header line
        "rows_per_s": (lines - 1) / elapsed,
        "rss_growth_mb": (max(peak[0], rss()) - baseline) / 2**20,
    }

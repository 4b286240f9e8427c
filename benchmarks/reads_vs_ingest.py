"""Reads never starve ingest (issue #18): posts' latency while clients load big pages.

    python benchmarks/reads_vs_ingest.py                 # 2,000 sensors, ~2 minutes
    python benchmarks/reads_vs_ingest.py --sensors 500 --duration 5 --legacy-rows 20000

A SQLite file is built through the project's own store and test client (the
builders of ``lists.py`` and ``rollups_cost.py``: ``--sensors`` protocol sensors
with aliases and readings, ``--legacy-rows`` rows uploaded through ``/upload``,
and one sensor with ``--days`` of history). Then co2logserver serves it under
gunicorn on 127.0.0.1, once in the documented production model (``-k gthread
--threads 8 -w 2``) and once in two sync workers, which a slow page can hold.

In each, ``--posters`` threads send small durable posts (one rogue observation of
one reading, a new connection each, as a sensor does) for ``--duration`` seconds,
first alone, then while ``--readers`` threads loop over the largest pages:
``/sensors``, ``/``, ``/v1/sensors``, the long sensor's ``aggregate=1h`` read-back
of 30 days and ``/download?format=csv``. Every loop stops at its deadline and
after ``--max-requests`` requests. Prints a Markdown table of the posts' rate and
latency, their non-2xx replies and the readers' rate.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

import lists  # noqa: E402
import rollups_cost  # noqa: E402
from harness.servers import LOCALHOST, Server, co2logserver_kind  # noqa: E402

from co2logserver import create_app  # noqa: E402
from co2logserver.store import get_store  # noqa: E402

MODELS = (("gthread", 8), ("sync", 1))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=20, help="posts per sensor")
    parser.add_argument("--legacy-rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30, help="the long sensor's")
    parser.add_argument("--posters", type=int, default=8, help="posting threads")
    parser.add_argument("--readers", type=int, default=4, help="reading threads")
    parser.add_argument("--duration", type=float, default=15.0, help="s per row")
    parser.add_argument(
        "--max-requests", type=int, default=100_000, help="per thread and row"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="gthread,sync", help="worker classes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args(argv)


def build(path: Path, args: argparse.Namespace) -> str:
    """Fill the SQLite file; return the SUID of the sensor with a long history."""
    app = create_app(
        {"DB": str(path), "RATELIMIT_ENABLED": False, "OSEM_UPLOAD": False}
    )
    lists.seed(app, args.sensors, args.readings, args.legacy_rows)
    history = argparse.Namespace(sensors=1, days=args.days)
    (long_suid,) = rollups_cost.fill_history(app, history)
    get_store(app).dispose()
    return long_suid


def pages(long_suid: str) -> list[str]:
    """The largest pages of the database, as the readers fetch them."""
    return [
        "/sensors",
        "/",
        "/v1/sensors",
        f"/v1/sensors/{long_suid}/readings?aggregate=1h",
        "/download?format=csv",
    ]


@dataclass
class Tally:
    """What one kind of client saw in one row."""

    latencies: list[float] = field(default_factory=list)
    suids: list[str] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return len(self.latencies) - self.non_2xx - self.errors

    def add(self, seconds: float, status: int | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if status is None:
                self.errors += 1
            elif not 200 <= status < 300:
                self.non_2xx += 1


def timed(port: int, method: str, path: str, body: bytes | None) -> int | None:
    """One request on a new connection, body read to the end; its status."""
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=120)
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        while reply.read(65536):
            pass
        return reply.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def poster(port: int, deadline: float, limit: int, tally: Tally) -> None:
    """One sensor posting one reading after the other until the deadline."""
    suid = str(uuid.uuid4())
    with tally.lock:
        tally.suids.append(suid)
    path = f"/rogue/v1/sensors/{suid}/readings"
    ts = int(time.time()) - limit
    for n in range(limit):
        if time.monotonic() >= deadline:
            return
        body = json.dumps([{"timestamp": ts + n, "readings": {"PM10": n % 50 + 0.5}}])
        started = time.perf_counter()
        status = timed(port, "POST", path, body.encode())
        tally.add(time.perf_counter() - started, status)


def reader(
    port: int,
    urls: list[str],
    offset: int,
    stop: threading.Event,
    limit: int,
    tally: Tally,
) -> None:
    """Fetch the pages round-robin until told to stop."""
    for n in range(limit):
        if stop.is_set():
            return
        url = urls[(offset + n) % len(urls)]
        started = time.perf_counter()
        status = timed(port, "GET", url, None)
        tally.add(time.perf_counter() - started, status)


def run_row(
    server: Server, urls: list[str], readers: int, args: argparse.Namespace
) -> dict:
    """Posts for ``--duration`` s, with ``readers`` reading threads beside them."""
    port = server.port
    posts, reads = Tally(), Tally()
    stop = threading.Event()
    reading = [
        threading.Thread(
            target=reader, args=(port, urls, i, stop, args.max_requests, reads)
        )
        for i in range(readers)
    ]
    read_started = time.monotonic()
    for thread in reading:
        thread.start()
    if readers:
        time.sleep(1.0)  # every reader is inside a page when the posts begin
    deadline = time.monotonic() + args.duration
    posting = [
        threading.Thread(target=poster, args=(port, deadline, args.max_requests, posts))
        for _ in range(args.posters)
    ]
    began = time.monotonic()
    for thread in posting:
        thread.start()
    for thread in posting:
        thread.join(args.duration + 150)
    posted = time.monotonic() - began
    stop.set()
    for thread in reading:
        thread.join(150)
    read_for = time.monotonic() - read_started
    latencies = sorted(posts.latencies) or [0.0]
    return {
        "posts": len(posts.latencies),
        "posts_per_s": len(posts.latencies) / posted,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "non_2xx": posts.non_2xx + posts.errors,
        "reads": len(reads.latencies),
        "reads_per_s": len(reads.latencies) / read_for if readers else 0.0,
        "read_p50_ms": (statistics.median(reads.latencies) * 1000)
        if reads.latencies
        else 0.0,
        "read_non_2xx": reads.non_2xx + reads.errors,
        "acked": posts.ok,
        "stored": stored_readings(server.db, posts.suids),
    }


def stored_readings(path: Path | str, suids: list[str]) -> int:
    """Readings the database holds for these posting sensors (one per post)."""
    marks = ", ".join("?" * len(suids))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM readings d JOIN registrations r "
            f"ON r.id = d.registration_id WHERE r.suid IN ({marks})",
            suids,
        ).fetchone()
    return int(count)


def page_sizes(server: Server, urls: list[str]) -> list[tuple[str, int, float]]:
    """Each page's bytes and time alone (also a warm-up of both workers)."""
    sizes = []
    for url in urls:
        conn = http.client.HTTPConnection(LOCALHOST, server.port, timeout=120)
        started = time.perf_counter()
        conn.request("GET", url)
        reply = conn.getresponse()
        body = reply.read()
        conn.close()
        if reply.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {reply.status}: {body[:200]!r}")
        sizes.append((url, len(body), time.perf_counter() - started))
    return sizes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="co2-readload-"))
    path = workdir / "readload.sqlite"
    started = time.monotonic()
    long_suid = build(path, args)
    print(f"built {path} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    urls = pages(long_suid)
    rows = []
    for model in args.models.split(","):
        threads = dict(MODELS)[model]
        kind = co2logserver_kind("FULL", 2_000_000, worker_class=model, threads=threads)
        server = Server(kind, args.workers, workdir / model, db=path)
        with server:
            if not rows:
                for url, size, seconds in page_sizes(server, urls):
                    print(f"page {url}: {size:,} bytes in {seconds * 1000:.0f} ms")
            else:
                page_sizes(server, urls)
            for readers in (0, args.readers):
                label = f"{model} x{threads}" if model == "gthread" else model
                result = run_row(server, urls, readers, args)
                rows.append((f"{label}, -w {args.workers}", readers, result))
                print(f"... {rows[-1][0]}, {readers} readers: done", file=sys.stderr)
    load = os.getloadavg()
    print(
        f"\n{args.sensors:,} sensors, {args.legacy_rows:,} legacy rows, "
        f"{args.posters} posting threads x {args.duration:g} s per row; "
        f"1-min load average {load_before:.2f} at start, {load[0]:.2f} at end\n"
    )
    print(
        "| workers | readers | posts/s | p50 ms | p99 ms | max ms | non-2xx "
        "| reads/s | read p50 ms | read non-2xx |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, readers, r in rows:
        print(
            f"| {label} | {readers} | {r['posts_per_s']:.0f} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['non_2xx']} "
            f"| {r['reads_per_s']:.1f} | {r['read_p50_ms']:.0f} | {r['read_non_2xx']} |"
        )
    acked = sum(r["acked"] for _, _, r in rows)
    stored = sum(r["stored"] for _, _, r in rows)
    print(f"\nposts acknowledged: {acked:,}; their readings stored: {stored:,}")
    if not args.keep:
        for child in sorted(workdir.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() else child.rmdir()
        workdir.rmdir()
    else:
        print(f"kept {workdir}", file=sys.stderr)
    if stored < acked:
        sys.exit(f"LOST: {acked - stored} acknowledged posts are not in the database")


if __name__ == "__main__":
    main()

"""Drive co2logserver through a PostgreSQL outage; print what the sensors lost.

    python benchmarks/outage.py                   # 60 s outage under 50 posts/s
    python benchmarks/outage.py --sigkill         # and SIGKILL the server during it

A private PostgreSQL on 127.0.0.1 and co2logserver under gunicorn on it (spool on,
rate limits off). 20 sensors post at a steady rate: half one rogue observation of
3 readings each, half a one-row legacy upload, every post with its own timestamp or
sequence number. After ``--before`` seconds PostgreSQL is stopped (fast shutdown,
connections cut) for ``--outage`` seconds, then started again while the posts go
on for ``--after`` seconds. With ``--sigkill`` the gunicorn master and workers are
SIGKILLed half-way through the outage and started again (the new server must apply
what the old one spooled).

A sensor whose connection is refused (the server is restarting) retries: nothing
was sent. A post whose connection breaks after it was sent is *unanswered*: not
acknowledged, so not counted as lost whichever way it went. Then, once the spool is
empty, the database is read: an acknowledged post not stored is *lost*; a legacy
row stored more than once is *duplicated*. *Catch-up* is the time from PostgreSQL
accepting connections again until ``/health`` shows an empty spool.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import report
from harness.postgres import Postgres, PostgresMissing
from harness.servers import LOCALHOST, Server, co2logserver_kind

QUANTITIES = ("PM10", "PM2_5", "TEMP")
TARGET_CATCH_UP = 30.0


@dataclass
class Sensor:
    """One sensor's posts: what it sent and what came back."""

    index: int
    rogue: bool
    base: int
    suid: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    unanswered: set[int] = field(default_factory=set)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    refused: int = 0

    def request(self, seq: int) -> tuple[str, bytes]:
        """Path and body of post ``seq``."""
        if self.rogue:
            ts = self.base + seq
            readings = {q: float(10 + (seq + k) % 40) for k, q in enumerate(QUANTITIES)}
            body = [{"timestamp": ts, "readings": readings}]
            return f"/rogue/v1/sensors/{self.suid}/readings", json.dumps(body).encode()
        row = {"sensor": [self.index], "seq": [seq], "co2": [400 + seq % 600]}
        return "/upload", json.dumps(row).encode()

    def post(self, port: int, give_up: float) -> None:
        """Send the next post; retry while the server refuses connections."""
        seq = self.sent
        self.sent += 1
        path, body = self.request(seq)
        headers = {"Content-Type": "application/json"}
        while True:
            conn = http.client.HTTPConnection(LOCALHOST, port, timeout=60)
            try:
                conn.connect()
            except OSError:
                conn.close()
                self.refused += 1
                if time.monotonic() > give_up:
                    self.unanswered.add(seq)
                    return
                time.sleep(0.1)
                continue
            try:
                conn.request("POST", path, body=body, headers=headers)
                reply = conn.getresponse()
                reply.read()
            except (OSError, http.client.HTTPException):
                self.unanswered.add(seq)  # sent, but the server died with it
                return
            finally:
                conn.close()
            self.statuses[reply.status] += 1
            if 200 <= reply.status < 300:
                self.acked.add(seq)
            return

    def run(self, port: int, start: float, interval: float, end: float) -> None:
        """Post every ``interval`` seconds from ``start`` to ``end``."""
        due = start
        while due < end:
            time.sleep(max(0.0, due - time.monotonic()))
            self.post(port, give_up=end + 30)
            due += interval


def spool_bytes(url: str) -> int | None:
    """The spool's bytes from ``/health``, or ``None`` when it does not answer."""
    conn = http.client.HTTPConnection(LOCALHOST, int(url.rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request("GET", "/health")
        reply = conn.getresponse()
        body = json.loads(reply.read() or b"{}")
        return int(body.get("spool", {}).get("bytes", 0))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def wait_for_empty_spool(server: Server, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until ``/health`` shows an empty spool (or ``None``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if spool_bytes(server.url) == 0:
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def kill_server(server: Server) -> None:
    """SIGKILL the gunicorn master and its workers (its own process group) at once."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(10)


def stored(database_url: str) -> tuple[dict, dict]:
    """Readings per (SUID, ts) and legacy rows per (sensor, seq) in the database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            readings = conn.execute(
                text(
                    "SELECT r.suid, d.ts, count(*) FROM readings d "
                    "JOIN registrations r ON r.id = d.registration_id "
                    "GROUP BY r.suid, d.ts"
                )
            ).all()
            uploads = conn.execute(
                text(
                    "SELECT sensor, seq, count(*) FROM data "
                    "WHERE sensor IS NOT NULL GROUP BY sensor, seq"
                )
            ).all()
    finally:
        engine.dispose()
    return (
        {(suid, int(ts)): n for suid, ts, n in readings},
        {(int(s), int(q)): n for s, q, n in uploads},
    )


def count(sensors: list[Sensor], database_url: str) -> dict[str, int]:
    """Lost and duplicated posts, and unanswered ones that were stored anyway."""
    readings, uploads = stored(database_url)
    lost = duplicated = unanswered_stored = 0
    for sensor in sensors:
        for seq in range(sensor.sent):
            if sensor.rogue:
                n = readings.get((sensor.suid, sensor.base + seq), 0)
                whole, copies = n == len(QUANTITIES), n // len(QUANTITIES)
            else:
                n = uploads.get((sensor.index, seq), 0)
                whole, copies = n >= 1, n
            if seq in sensor.acked and not whole:
                lost += 1
            duplicated += max(0, copies - 1)
            unanswered_stored += seq in sensor.unanswered and whole
    return {
        "lost": lost,
        "duplicated": duplicated,
        "unanswered_stored": unanswered_stored,
    }


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """One outage: start everything, drive it, stop everything; the raw numbers."""
    log = print if not args.quiet else (lambda *a, **k: None)
    pg = Postgres()
    server = None
    try:
        pg.init()
        kind = co2logserver_kind("FULL", 10_000)
        kind = replace(
            kind, env=kind.env | {"CO2LOGSERVER_SPOOL_DIR": str(workdir / "spool")}
        )
        server = Server(kind, args.workers, workdir / "server", db=pg.url).start()
        log(f"co2logserver on {server.url}, PostgreSQL on port {pg.port}", flush=True)
        base = int(time.time()) - 86_400
        sensors = [Sensor(i, rogue=i % 2 == 0, base=base) for i in range(args.sensors)]
        interval = args.sensors / args.rate
        start = time.monotonic() + 0.5
        end = start + args.before + args.outage + args.after
        phase = interval / len(sensors)  # the sensors' posts spread evenly
        threads = [
            threading.Thread(
                target=s.run,
                args=(server.port, start + phase * s.index, interval, end),
                daemon=True,  # an interrupted run does not wait for the load
            )
            for s in sensors
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, start + args.before - time.monotonic()))
        pg.stop()
        log(f"PostgreSQL stopped for {args.outage:g} s", flush=True)
        in_flight = 0
        if args.sigkill:
            time.sleep(args.outage / 2)
            before = sum(len(s.unanswered) for s in sensors)
            kill_server(server)
            log("gunicorn SIGKILLed; starting it again", flush=True)
            server.start()
            in_flight = sum(len(s.unanswered) for s in sensors) - before
        time.sleep(max(0.0, start + args.before + args.outage - time.monotonic()))
        pg.start()
        back = time.monotonic()
        log("PostgreSQL is back", flush=True)
        catch_up = wait_for_empty_spool(server, back, args.after + 120)
        for thread in threads:
            thread.join(args.after + 120)
        wait_for_empty_spool(server, back, 120)  # what was spooled at the very end
        numbers = count(sensors, pg.url)
        server.stop()
    finally:
        if server is not None:
            server.stop()
        pg.remove()
    statuses = sum((s.statuses for s in sensors), collections.Counter())
    return {
        "mode": "sigkill" if args.sigkill else "plain",
        "outage_s": args.outage,
        "posts": sum(s.sent for s in sensors),
        "acked": sum(len(s.acked) for s in sensors),
        "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "statuses": dict(statuses),
        "unanswered": sum(len(s.unanswered) for s in sensors),
        "unanswered_at_kill": in_flight,
        "refused_connects": sum(s.refused for s in sensors),
        "catch_up_s": catch_up,
        **numbers,
    }


HEADER = (
    "mode", "outage", "posts", "non-2xx", "unanswered at kill", "lost",
    "duplicated", "catch-up", "result",
)  # fmt: skip


def row(result: dict) -> tuple[str, ...]:
    """The table row of one run."""
    catch_up = result["catch_up_s"]
    clean = (
        result["non_2xx"] == 0
        and result["lost"] == 0
        and result["duplicated"] == 0
        and result["unanswered"] == result["unanswered_at_kill"]
        and catch_up is not None
        and catch_up <= TARGET_CATCH_UP
    )
    return (
        "--sigkill" if result["mode"] == "sigkill" else "plain",
        f"{result['outage_s']:g} s",
        f"{result['posts']:,}",
        str(result["non_2xx"]),
        str(result["unanswered_at_kill"]) if result["mode"] == "sigkill" else "-",
        str(result["lost"]),
        str(result["duplicated"]),
        "not within the wait" if catch_up is None else f"{catch_up:.1f} s",
        "met" if clean else "MISSED",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Stop PostgreSQL under a steady post load; count what was lost."
    )
    parser.add_argument("--outage", type=float, default=60.0, help="seconds (60)")
    parser.add_argument("--before", type=float, default=5.0, help="seconds (5)")
    parser.add_argument("--after", type=float, default=30.0, help="seconds (30)")
    parser.add_argument("--rate", type=float, default=50.0, help="posts/s (50)")
    parser.add_argument("--sensors", type=int, default=20, help="sensors (20)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--sigkill", action="store_true", help="SIGKILL the server during the outage"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the server logs")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    args = parser.parse_args(argv)
    if args.outage <= 0 or args.rate <= 0 or args.sensors < 2:
        parser.error("--outage and --rate must be positive, --sensors at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one outage and print its table row."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="co2logserver-outage-"))
    try:
        result = run(args, workdir)
    except PostgresMissing as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"server logs and spool kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    command = "python benchmarks/outage.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print()
    print(f"`{command.strip()}` ({args.rate:g} posts/s from {args.sensors} sensors)")
    print()
    print(report.markdown_table(HEADER, [row(result)]))
    print()
    print(
        f"acknowledged {result['acked']:,}, unanswered {result['unanswered']}, "
        f"unanswered but stored {result['unanswered_stored']}, "
        f"refused connects retried {result['refused_connects']}, "
        f"statuses {result['statuses']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

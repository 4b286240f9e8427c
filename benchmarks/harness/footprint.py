"""The footprint and read phases, on one database filled over HTTP.

One worker takes 1,000,000 legacy rows and about 1,000,000 readings (its memory is
read before and after); the same file then serves the streamed CSV export and the
read scenarios, for co2logserver and, when asked, for 0.1.2.
"""

from __future__ import annotations

import functools
import json
from contextlib import ExitStack
from pathlib import Path

from harness import client
from harness.dbstats import bytes_per_reading, count_rows
from harness.phases import (
    Cell,
    Options,
    ours,
    progress,
    server_dir,
    take_turns,
)
from harness.scenarios import Scenario
from harness.servers import Server, predecessor_kind, rss_bytes


def fill_footprint_db(options: Options, workdir: Path) -> tuple[Path, list[str], dict]:
    """Ingest the legacy rows and readings through one worker; note its memory."""
    kind = ours(options)
    sizes = options.sizes
    with Server(kind, 1, workdir) as server:
        start_rss = server.worker_rss()[0]
        options.log(f"  filling: {sizes.legacy_rows:,} legacy rows over HTTP")
        acked = client.fill_legacy(server.url, sizes.legacy_rows)
        after_rows = server.worker_rss()[0]
        options.log(f"  filling: readings of {sizes.reading_sensors} sensors over HTTP")
        suids = client.fill_readings(server.url, sizes.reading_sensors)
        after_readings = server.worker_rss()[0]
        db = server.db
    footprint = {
        "legacy_rows_acked": acked,
        "legacy_rows_stored": count_rows(db, "data"),
        "worker_rss_start_mb": start_rss / 2**20,
        "worker_rss_after_rows_mb": after_rows / 2**20,
        "worker_rss_after_readings_mb": after_readings / 2**20,
        "bulk_bytes_per_reading": bytes_per_reading(db),
    }
    return db, suids, footprint


def export_phase(options: Options, db: Path, workdir: Path) -> Cell:
    """The streamed CSV export, one request at a time, with the worker's memory."""
    kind = ours(options)
    rows = options.sizes.export_rows
    cell = Cell("export-csv-1m", kind.name, 1, 1)
    with Server(kind, 1, workdir, db=db) as server:
        path = f"/download?format=csv&number={rows}"
        for _ in range(options.repeats):
            worker_rss = functools.partial(rss_bytes, server.worker_pids()[0])
            numbers = client.timed_export(server.url, path, worker_rss)
            if numbers["rows"] != rows:
                raise RuntimeError(f"export gave {numbers['rows']} rows, not {rows}")
            run = {
                "requests_per_s": None,  # one long request: its time is in p50
                "rows_per_s": numbers["rows_per_s"],
                "p50_ms": numbers["seconds"] * 1000,
                "p99_ms": numbers["seconds"] * 1000,
                "non_2xx": 0,
                "errors": 0,
                "acked": 0,
                "stored": None,
                "requests": 1,
                "rss_growth_mb": numbers["rss_growth_mb"],
            }
            cell.runs.append(run)
            options.log(progress(cell, run) + f"  +{numbers['rss_growth_mb']:.1f} MB")
    return cell


def check_reply(server: Server, path: str, expected: int) -> None:
    """Make sure a read scenario returns the rows it is counted for."""
    status, body = client.request(server.url, "GET", path)
    document = json.loads(client.checked(status, body, f"GET {path}"))
    got = len(document["readings"]) if isinstance(document, dict) else len(document)
    if got != expected:
        raise RuntimeError(f"{server.kind.name} GET {path}: {got} rows, not {expected}")


def read_phase(
    options: Options, scenarios: list[Scenario], db: Path, suid: str
) -> list[Cell]:
    """Read scenarios on the footprint database: co2logserver and 0.1.2 in turns."""
    kinds = [ours(options)]
    if options.predecessor_venv:
        kinds.append(predecessor_kind(options.predecessor_venv))
    cells = []
    for workers in sorted({w for w, _ in options.read_cells}):
        connections = [c for w, c in options.read_cells if w == workers]
        with ExitStack() as stack:
            servers = [
                stack.enter_context(
                    Server(
                        kind,
                        workers,
                        server_dir(options, "read", kind.name, workers),
                        db,
                    )
                )
                for kind in kinds
            ]
            for scenario in scenarios:
                path = scenario.path.format(suid=suid)
                able = [s for s in servers if s is servers[0] or scenario.predecessor]
                for server in able:
                    check_reply(server, path, scenario.rows_per_reply)
                turns = [(server, lambda p=path: {"path": p}) for server in able]
                cells += take_turns(options, scenario, turns, connections)
    return cells

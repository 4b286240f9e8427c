"""The phases of one benchmark run: ingest cells, ceilings, stress, footprint, reads.

Every phase starts its own servers on fresh databases, runs wrk (or the raw-SQLite
loop) for the configured duration and repeats, and returns plain data that
:mod:`harness.report` turns into tables.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import client, loadgen, sqlite_ceiling
from harness.dbstats import bytes_per_reading, count_rows
from harness.scenarios import (
    INGEST_CELLS,
    READ_CELLS,
    STRESS_CONNECTIONS,
    STRESS_WORKERS,
    Scenario,
    Sizes,
)
from harness.servers import (
    REPO,
    Server,
    ServerKind,
    ceiling_kind,
    co2logserver_kind,
    durable_ceiling_kind,
    predecessor_kind,
)

#: Servers that store nothing in a database (their rows are not counted).
REFERENCES = ("bare-flask", "durable-flask")

SIGNED_SENSORS = 64
WARM_CAP_S = 120  # the warm-up that posts once per sensor ends sooner, when done
MAX_ROWS = 2_000_000  # CO2LOGSERVER_MAX_LIMIT_OF_ROWS: room for the 1,000,000 export
_run_numbers = itertools.count()


@dataclass
class Options:
    """What to run, from the command line."""

    workdir: Path
    duration: float = 10.0
    repeats: int = 3
    stress_duration: float = 20.0
    synchronous: tuple[str, ...] = ("FULL",)
    ceilings: bool = True
    predecessor_venv: Path | None = None
    sizes: Sizes = field(default_factory=Sizes)
    source: Path = REPO
    ingest_cells: tuple[tuple[int, int], ...] = INGEST_CELLS
    read_cells: tuple[tuple[int, int], ...] = READ_CELLS
    #: co2logserver's gunicorn worker model (the references keep sync workers).
    worker_class: str = "gthread"
    threads: int = 8
    log: object = print


def ours(options: Options, synchronous: str | None = None) -> ServerKind:
    """co2logserver from the benchmarked source, in one synchronous mode."""
    mode = synchronous or options.synchronous[0]
    return co2logserver_kind(
        mode, MAX_ROWS, options.source, options.worker_class, options.threads
    )


@dataclass
class Cell:
    """Repeated runs of one scenario on one server at one workers x connections."""

    scenario: str
    server: str
    workers: int
    connections: int
    runs: list[dict] = field(default_factory=list)


def wrk_run(
    server: Server, scenario: Scenario, connections: int, seconds: float, extra: dict
) -> dict:
    """One measured wrk run, with the rows the database gained."""
    before = count_rows(server.db, scenario.table) if scenario.table else 0
    if scenario.group == "ingest":
        url, script = server.url, "ingest.lua"
    else:
        url, script = server.url + extra.pop("path"), "read.lua"
    result = loadgen.run_wrk(url, script, connections, seconds, extra)
    stored = None
    if scenario.table and server.kind.name not in REFERENCES:
        stored = count_rows(server.db, scenario.table) - before
    acked = result.acked if scenario.group == "ingest" else 0
    rows = acked if scenario.group == "ingest" else result.ok * scenario.rows_per_reply
    return {
        "requests_per_s": result.requests_per_s,
        "rows_per_s": rows / result.duration_s,
        "p50_ms": result.p50_us / 1000,
        "p99_ms": result.p99_us / 1000,
        "non_2xx": result.non_2xx,
        "errors": result.socket_errors + result.timeouts,
        "acked": acked,
        "stored": stored,
        "requests": result.requests,
    }


def ingest_args(scenario: Scenario, sensors_file: Path | None) -> dict:
    """Arguments of lua/ingest.lua for the next run: a fresh range of timestamps."""
    run = next(_run_numbers)
    args = {"kind": scenario.kind, "rows": scenario.rows, "per": scenario.per}
    if scenario.kind in ("json", "csv"):
        args["base"] = 1_000_000_000 + run * 20_000_000
    else:
        args["base"] = 1_600_000_000 + run * 100_000
        args["nonce"] = f"{run:08x}"
        args["suids"] = scenario.sensors
    if sensors_file:
        args["sensors"] = sensors_file
    return args


def prepare_sensors(server: Server, scenario: Scenario) -> Path | None:
    """Register the sensors a signed scenario posts for (made up for the ceiling)."""
    if scenario.kind != "signed":
        return None
    path = server.workdir / "sensors.txt"
    if server.kind.name in REFERENCES:
        client.fake_sensors(SIGNED_SENSORS, path)
    else:
        client.register_sensors(server.url, SIGNED_SENSORS, path)
    return path


def ingest_servers(options: Options, scenario: Scenario) -> list[ServerKind]:
    """co2logserver in each synchronous mode, then the ceiling and 0.1.2 if wanted."""
    kinds = [ours(options, mode) for mode in options.synchronous]
    if options.ceilings and scenario.ceiling in ("flask", "sqlite"):
        kinds.append(durable_ceiling_kind())
    if options.ceilings and scenario.ceiling == "flask":
        kinds.append(ceiling_kind())
    if options.predecessor_venv and scenario.predecessor:
        kinds.append(predecessor_kind(options.predecessor_venv))
    return kinds


def server_dir(options: Options, *parts: object) -> Path:
    """A fresh directory for one server instance."""
    name = "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts)
    return options.workdir / name


def ingest_phase(options: Options, scenario: Scenario, footprint: dict) -> list[Cell]:
    """Every ingest cell of ``scenario`` on every server kind.

    The servers of one worker count run side by side and take turns run by run,
    so a change in background load hits co2logserver and its ceiling alike.
    """
    cells = []
    for workers in sorted({w for w, _ in options.ingest_cells}):
        with ExitStack() as stack:
            servers = []
            for kind in ingest_servers(options, scenario):
                workdir = server_dir(options, scenario.name, kind.name, workers)
                server = stack.enter_context(Server(kind, workers, workdir))
                sensors = prepare_sensors(server, scenario)
                warm_up(server, scenario, sensors, 2 * workers)
                servers.append(
                    (server, functools.partial(ingest_args, scenario, sensors))
                )
            connections = [c for w, c in options.ingest_cells if w == workers]
            cells += take_turns(options, scenario, servers, connections)
        for server, _ in servers:
            if scenario.table == "readings" and server.kind.name == "co2logserver":
                key = f"{scenario.name} ({workers} worker(s))"
                footprint.setdefault("posts_bytes_per_reading", {})[key] = (
                    bytes_per_reading(server.db)
                )
    return cells


def warm_up(
    server: Server, scenario: Scenario, sensors: Path | None, connections: int = 2
) -> None:
    """Every sensor of the scenario posts once, then ``scenario.warmup`` s of load.

    The measured runs then post for sensors that exist, as in steady use.
    """
    warm = ingest_args(scenario, sensors)
    if scenario.kind not in ("json", "csv"):
        once = {**warm, "once": 1}
        loadgen.run_wrk(server.url, "ingest.lua", 2, WARM_CAP_S, once)
    loadgen.run_wrk(server.url, "ingest.lua", connections, scenario.warmup, warm)


def take_turns(
    options: Options,
    scenario: Scenario,
    servers: list[tuple[Server, Callable[[], dict]]],
    connection_counts: list[int],
) -> list[Cell]:
    """Repeat each cell on every server, one run per server in turn.

    Each server comes with a function giving the wrk arguments of its next run.
    """
    cells = []
    for connections in connection_counts:
        row = [
            Cell(scenario.name, server.kind.name, server.workers, connections)
            for server, _ in servers
        ]
        for _ in range(options.repeats):
            for cell, (server, next_args) in zip(row, servers, strict=True):
                run = wrk_run(
                    server, scenario, connections, options.duration, next_args()
                )
                cell.runs.append(run)
                options.log(progress(cell, run))
        cells += row
    return cells


def progress(cell: Cell, run: dict) -> str:
    """One line per run, so a long benchmark shows it is alive."""
    rate = run["requests_per_s"]
    return (
        f"  {cell.scenario:<20} {cell.server:<22} {cell.workers}w x "
        f"{cell.connections:<3}c {rate or 0:>9.0f} req/s "
        f"{run['rows_per_s']:>10.0f} rows/s  non-2xx {run['non_2xx']}"
    )


def sqlite_ceiling_phase(options: Options) -> list[Cell]:
    """The raw-SQLite storage ceiling, in each synchronous mode."""
    cells = []
    for mode in options.synchronous:
        cell = Cell("raw-sqlite-100", f"raw SQLite/{mode}", 0, 0)
        for repeat in range(options.repeats):
            path = server_dir(options, "sqlite-ceiling", mode, repeat)
            path.mkdir(parents=True, exist_ok=True)
            numbers = sqlite_ceiling.run(
                path / "ceiling.sqlite", options.duration, mode
            )
            run = {
                "requests_per_s": numbers["requests_per_s"],
                "rows_per_s": numbers["rows_per_s"],
                "p50_ms": None,
                "p99_ms": None,
                "non_2xx": 0,
                "errors": 0,
                "acked": numbers["acked"],
                "stored": numbers["stored"],
                "requests": numbers["acked"] // sqlite_ceiling.BATCH,
            }
            cell.runs.append(run)
            options.log(progress(cell, run))
        cells.append(cell)
    return cells


def stress_phase(options: Options, json_batch: Scenario, signed: Scenario) -> dict:
    """2 workers x 64 connections: gateways' 100-row batches and signed sensor posts.

    Half the connections each; afterwards every acknowledged row must be stored
    once, and no legacy row twice.
    """
    kind = ours(options)
    workdir = server_dir(options, "stress", kind.name)
    half = STRESS_CONNECTIONS // 2
    with Server(kind, STRESS_WORKERS, workdir) as server:
        sensors = prepare_sensors(server, signed)
        jobs = [
            (json_batch, ingest_args(json_batch, None)),
            (signed, ingest_args(signed, sensors)),
        ]
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(
                    lambda job: loadgen.run_wrk(
                        server.url, "ingest.lua", half, options.stress_duration, job[1]
                    ),
                    jobs,
                )
            )
    legacy, readings = results
    stored_rows = count_rows(server.db, "data")
    distinct_rows = count_rows(server.db, "data", distinct="time")
    stored_readings = count_rows(server.db, "readings")
    return {
        "workers": STRESS_WORKERS,
        "connections": STRESS_CONNECTIONS,
        "seconds": options.stress_duration,
        "requests": legacy.requests + readings.requests,
        "non_2xx": legacy.non_2xx + readings.non_2xx,
        "errors": legacy.socket_errors
        + legacy.timeouts
        + readings.socket_errors
        + readings.timeouts,
        "rows_acked": legacy.acked,
        "rows_stored": stored_rows,
        "rows_duplicated": stored_rows - distinct_rows,
        "readings_acked": readings.acked,
        "readings_stored": stored_readings,
        "lost": max(0, legacy.acked - stored_rows)
        + max(0, readings.acked - stored_readings),
        "p99_ms": max(legacy.p99_us, readings.p99_us) / 1000,
    }


def as_dicts(cells: list[Cell]) -> list[dict]:
    """Cells as JSON-ready dicts."""
    return [asdict(cell) for cell in cells]

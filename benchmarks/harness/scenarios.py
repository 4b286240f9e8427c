"""What the benchmark measures: scenarios, the cells they run in, and the targets."""

from __future__ import annotations

from dataclasses import dataclass

#: (workers, connections) of each ingest cell: one worker behind one connection
#: (latency), and two workers behind 32 connections (throughput of both cores).
INGEST_CELLS = ((1, 1), (2, 32))
#: Read scenarios run where throughput matters; 0.1.2 is compared there.
READ_CELLS = ((2, 32),)
STRESS_WORKERS = 2
STRESS_CONNECTIONS = 64


@dataclass(frozen=True)
class Scenario:
    """One kind of request, with what a reply is worth in rows."""

    name: str
    title: str
    group: str  # "ingest", "read" or "export"
    kind: str = ""  # lua/ingest.lua kind: json, csv, readings, signed
    rows: int = 1  # rows (readings: observations) in one request
    rows_per_reply: int = 1  # rows one 2xx reply acknowledges or returns
    per: int = 3  # readings per observation (readings kinds)
    sensors: int = 50  # sensors (devices) each wrk thread posts for, in turn
    warmup: int = 1  # seconds of load before the measured runs
    path: str = ""  # read scenarios: path, {suid} filled in
    ceiling: str = ""  # "flask" (req/s), "sqlite" (rows/s) or another scenario's name
    table: str = ""  # table whose row count is "rows stored"
    predecessor: bool = False  # co2logserver 0.1.2 has this route


SCENARIOS = (
    Scenario(
        "upload-json-1",
        "POST /upload, JSON, 1 row",
        "ingest",
        kind="json",
        ceiling="flask",
        table="data",
        predecessor=True,
    ),
    Scenario(
        "upload-json-100",
        "POST /upload, JSON, 100 rows",
        "ingest",
        kind="json",
        rows=100,
        rows_per_reply=100,
        ceiling="sqlite",
        table="data",
        predecessor=True,
    ),
    Scenario(
        "upload-csv-100",
        "POST /upload, CSV, 100 rows",
        "ingest",
        kind="csv",
        rows=100,
        rows_per_reply=100,
        ceiling="sqlite",
        table="data",
        predecessor=True,
    ),
    Scenario(
        "rogue-1x3",
        "POST /rogue/v1/…/readings, 1 observation x 3 readings",
        "ingest",
        kind="readings",
        rows_per_reply=3,
        ceiling="flask",
        table="readings",
    ),
    Scenario(
        "signed-1x3",
        "POST /v1/…/readings with OpenSmogHash, 1 observation x 3 readings",
        "ingest",
        kind="signed",
        rows_per_reply=3,
        ceiling="flask",
        table="readings",
    ),
    Scenario(
        "rogue-1x10",
        "POST /rogue/v1/…/readings, 1 observation x 10 readings",
        "ingest",
        kind="readings",
        per=10,
        rows_per_reply=10,
        sensors=1000,
        warmup=2,
        table="readings",
    ),
    Scenario(
        "airrohr-10",
        "POST /airrohr/v1/push, an SDS011+BME280+DHT22 node's 10 values",
        "ingest",
        kind="airrohr",
        rows_per_reply=10,
        # Receive-time stamps are whole seconds, and a node's second post within
        # one second is a resend that stores nothing: at ~2,000 req/s, 3,000 nodes
        # keep that rare (airrohr itself posts every 145 s).
        sensors=3000,
        warmup=2,
        ceiling="rogue-1x10",
        table="readings",
    ),
    Scenario(
        "rogue-100x3",
        "POST /rogue/v1/…/readings, 100 observations x 3 readings",
        "ingest",
        kind="readings",
        rows=100,
        rows_per_reply=300,
        table="readings",
    ),
    Scenario(
        "influx-100",
        "POST /write (Telegraf), 100 lines x 3 fields of one series",
        "ingest",
        kind="influx",
        rows=100,
        rows_per_reply=300,
        ceiling="rogue-100x3",
        table="readings",
    ),
    Scenario(
        "ttn-1x3",
        "POST /lorawan/v1/ttn, an uplink with 3 decoded values",
        "ingest",
        kind="ttn",
        rows_per_reply=3,
        ceiling="rogue-1x3",
        table="readings",
    ),
    Scenario(
        "download-json-1000",
        "GET /download?format=json&number=1000",
        "read",
        rows_per_reply=1000,
        path="/download?format=json&number=1000",
        predecessor=True,
    ),
    Scenario(
        "readback-10k",
        "GET /v1/sensors/<SUID>/readings?limit=10000",
        "read",
        rows_per_reply=10000,
        path="/v1/sensors/{suid}/readings?limit=10000",
    ),
    Scenario(
        "export-csv-1m",
        "GET /download?format=csv, 1,000,000 rows, streamed",
        "export",
    ),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@dataclass(frozen=True)
class Sizes:
    """How much data the footprint and read phases ingest and read."""

    legacy_rows: int = 1_000_000
    reading_sensors: int = 100
    export_rows: int = 1_000_000


FULL_SIZES = Sizes()
QUICK_SIZES = Sizes(legacy_rows=100_000, reading_sensors=10, export_rows=100_000)

#: Targets of issue 6, checked against every run.
MIN_FLASK_RATIO = 0.5  # 1-row and 1-observation posts vs bare Flask req/s
MIN_SQLITE_RATIO = 0.25  # 100-row batches vs raw SQLite rows/s
#: Issue 16's targets against durable-Flask (1-row posts at 1 x 1 and at 2 x 32,
#: 100-row batches in rows/s).
MIN_DURABLE_ONE = 0.8
MIN_DURABLE_MANY = 1.2
MIN_DURABLE_BATCH = 1.0
#: Issue 15: firmware protocols vs the /rogue/v1 post of as many readings.
MIN_EQUIVALENT_RATIO = 1.0
MIN_PREDECESSOR_READ_RATIO = 1.5  # JSON download rows/s vs 0.1.2
MIN_EXPORT_ROWS_PER_S = 200_000
MAX_EXPORT_GROWTH_MB = 50
MAX_WORKER_RSS_MB = 100
MAX_BYTES_PER_READING = 40

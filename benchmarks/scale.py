"""The scale benchmark (issue #18): every page and API at growing sizes, one table.

    python benchmarks/scale.py                          # small and medium
    python benchmarks/scale.py --sizes small,medium,large --keep ~/co2-scale
    python benchmarks/scale.py --network --year --keep ~/co2-scale   # opt-in sizes

For each size a SQLite file is built through the project's own store
(:mod:`harness.seeding`: protocol sensors with airrohr aliases posting PM10, TEMP and
HUM every 145 s, about 1,790 readings per sensor and day, the hourly rollups kept by
the same inserts as ingest keeps them, and legacy rows through ``/upload``). Building
is the slow part: with ``--keep DIR`` the files stay there and are reused when a
complete one of the same size is found (``<size>.json`` beside it says so).

Then every request is timed in this process through the WSGI app (Flask's test
client: no HTTP server, no network, one request at a time), one warm-up and up to
``--repeat`` runs within ``--budget`` seconds; the table gives the median. The CSV
export streams its first ``--export-rows`` rows (rows/s and the growth of this
process's RSS while it streams; "flat" is under 50 MB); ingest is sensor posts of one
observation with three readings (``rogue-1x3``) through the same test client, in
rounds alternating between the built database and an empty one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

import lists  # noqa: E402
import rollups_cost  # noqa: E402
from harness import seeding  # noqa: E402

from co2logserver import create_app  # noqa: E402
from co2logserver.store import get_store  # noqa: E402
from co2logserver.store import sensors as sensor_sql  # noqa: E402

DAY = 86400
HOUR = 3600


@dataclass(frozen=True)
class Size:
    """One database of the table: sensors, days of history, legacy rows."""

    name: str
    sensors: int
    days: int
    legacy_rows: int


SIZES = {
    size.name: size
    for size in (
        Size("small", 100, 7, 200_000),
        Size("medium", 1_000, 7, 1_000_000),
        Size("large", 2_000, 30, 1_000_000),
        Size("network", 15_000, 7, 1_000_000),
        Size("year", 2_000, 365, 1_000_000),
    )
}
#: Sizes only on their flag (their builds take hours and tens of GB).
OPT_IN = ("network", "year")


def config(path: Path, spool: Path) -> dict:
    """The app of the benchmark: no rate limits, no forwarding, room for the export."""
    return {
        "DB": str(path),
        "RATELIMIT_ENABLED": False,
        "OSEM_UPLOAD": False,
        "SPOOL_DIR": str(spool),
        "MAX_LIMIT_OF_ROWS": 10_000_000,
        "DB_TIMEOUT": 120,
    }


# ------------------------------------------------------------------------ building


def build(path: Path, size: Size, log: Callable[[str], None] = print) -> dict:
    """Fill a new SQLite file at ``path``; return what it holds (and write it to
    ``<path>.json``, the mark of a complete build)."""
    for stale in path.parent.glob(path.name + "*"):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    spool = Path(tempfile.mkdtemp(prefix="co2-scale-spool-"))
    app = create_app(config(path, spool))
    now = int(time.time())
    end = now - now % HOUR
    start = end - size.days * DAY
    began = time.perf_counter()
    last_log = [began]

    def progress(done: int, stored: int) -> None:
        if time.perf_counter() - last_log[0] >= 30 or done == size.sensors:
            last_log[0] = time.perf_counter()
            rate = stored / (last_log[0] - began)
            log(
                f"  {size.name}: {done:,}/{size.sensors:,} sensors, "
                f"{stored:,} readings, {rate:,.0f} readings/s"
            )

    readings = seeding.seed_sensors(app, 0, size.sensors, start, end, progress=progress)
    filled = time.perf_counter() - began
    seeding.upload_legacy(app, size.legacy_rows)
    legacy_seconds = time.perf_counter() - began - filled
    with get_store(app).reading() as conn:
        rollup_rows = conn.exec_driver_sql("SELECT count(*) FROM rollups_hourly")
        rollup_rows = rollup_rows.scalar()
        built = conn.exec_driver_sql(
            "SELECT built FROM rollups_state WHERE name = 'hourly'"
        ).scalar()
    get_store(app).dispose()
    shutil.rmtree(spool, ignore_errors=True)
    info = {
        **asdict(size),
        "start": start,
        "end": end,
        "readings": readings,
        "rollup_rows": rollup_rows,
        "rollups_built": bool(built),
        "readings_seconds": round(filled, 1),
        "readings_per_second": round(readings / filled) if filled else 0,
        "legacy_seconds": round(legacy_seconds, 1),
        "bytes": path.stat().st_size,
    }
    Path(f"{path}.json").write_text(json.dumps(info, indent=1))
    return info


def built(directory: Path, size: Size, log: Callable[[str], None]) -> dict:
    """The database of ``size`` in ``directory``: reused when complete, else built."""
    path = directory / f"{size.name}.sqlite"
    mark = Path(f"{path}.json")
    if path.exists() and mark.exists():
        info = json.loads(mark.read_text())
        if all(info.get(k) == v for k, v in asdict(size).items()):
            log(f"{size.name}: reusing {path}")
            return {**info, "reused": True}
    log(f"{size.name}: building {path} ({size.sensors:,} sensors x {size.days} d)")
    return {**build(path, size, log), "reused": False}


# ----------------------------------------------------------------------- measuring


def rss() -> int:
    """This process's resident set in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def export(client, rows: int, runs: int) -> tuple[float, int, int]:
    """``/download?format=csv`` of the first ``rows`` rows: median rows/s, the
    largest RSS growth while streaming, and the rows received."""
    url = f"/download?format=csv&number={rows}"
    rates, growths, got = [], [], 0
    for _ in range(runs):
        base = peak = rss()
        started = time.perf_counter()
        answer = client.get(url, buffered=False)
        assert answer.status_code == 200, answer.status_code
        lines = 0
        for n, chunk in enumerate(answer.response):
            lines += chunk.count(b"\n" if isinstance(chunk, bytes) else "\n")
            if n % 20 == 0:
                peak = max(peak, rss())
        answer.close()
        seconds = time.perf_counter() - started
        got = lines - 1  # the header
        rates.append(got / seconds)
        growths.append(max(peak, rss()) - base)
    return statistics.median(rates), max(growths), got


def ingest_rates(app, empty_app, posts: int, rounds: int) -> tuple[float, float]:
    """Median posts/s of ``rogue-1x3`` posts on the built and on an empty database,
    alternating rounds (one new rogue sensor each, on each database)."""
    rates: dict[str, list[float]] = {"built": [], "empty": []}
    clients = {"built": app.test_client(), "empty": empty_app.test_client()}
    suids = {name: rollups_cost.register(c)[0] for name, c in clients.items()}
    start = int(time.time()) - 2 * DAY
    for round_ in range(rounds):
        order = ("built", "empty") if round_ % 2 else ("empty", "built")
        for name in order:
            at = start + round_ * (posts + 1)
            rate = rollups_cost.posts_per_second(clients[name], suids[name], at, posts)
            rates[name].append(rate)
    return statistics.median(rates["built"]), statistics.median(rates["empty"])


@dataclass
class Row:
    """One line of the table: what, its target, and a cell per size."""

    name: str
    target: str
    cells: dict[str, str]
    met: dict[str, bool | None]


def page(
    rows: list[Row], name: str, size: str, seconds: float, extra: str = ""
) -> None:
    """A page's median against the 200 ms target."""
    cell = f"{seconds * 1000:.1f} ms{extra}"
    add(rows, name, "< 200 ms", size, cell, seconds < 0.2)


def add(
    rows: list[Row], name: str, target: str, size: str, cell: str, met: bool | None
) -> None:
    """Put ``cell`` in the row called ``name`` (made on first use)."""
    for row in rows:
        if row.name == name:
            break
    else:
        row = Row(name, target, {}, {})
        rows.append(row)
    row.cells[size] = cell
    row.met[size] = met


def measure_size(info: dict, directory: Path, args, rows: list[Row]) -> None:
    """Every page and API of the issue on the database of one size."""
    size = info["name"]
    path = directory / f"{size}.sqlite"
    spool = Path(tempfile.mkdtemp(prefix="co2-scale-spool-"))
    app = create_app(config(path, spool))
    client = app.test_client()
    n = info["sensors"]
    end = info["end"]
    month = f"from={end - 30 * DAY}&to={end}"
    one = seeding.suid(n // 2)
    with get_store(app).reading() as conn:
        sensor = sensor_sql.get_sensor(conn, one)
    assert sensor is not None, one
    node = f"esp8266-{n // 3}"

    def timed(url: str) -> tuple[float, int]:
        return lists.measure(client, url, args.repeat, args.budget)

    seconds, _ = timed("/")
    page(rows, "dashboard `/`", size, seconds)
    seconds, length = timed("/sensors")
    page(rows, "`/sensors`, first page", size, seconds, f", {length / 1024:.0f} KB")
    last = -(-n // 50)
    seconds, length = timed(f"/sensors?page={last}")
    page(rows, "`/sensors`, last page", size, seconds, f", {length / 1024:.0f} KB")
    seconds, _ = timed(f"/sensors?q={node}")
    page(rows, "`/sensors?q=<node>` search", size, seconds)
    seconds, length = timed("/v1/sensors")
    page(
        rows, "`GET /v1/sensors` first page", size, seconds, f", {length / 1024:.0f} KB"
    )
    seconds, _ = timed("/v1/sensors?limit=100")
    page(rows, "`GET /v1/sensors?limit=100` first page", size, seconds)
    deep = seeding.suid(n * 9 // 10)
    seconds, _ = timed(f"/v1/sensors?limit=100&cursor={deep}")
    page(rows, "`GET /v1/sensors?limit=100&cursor=` at 90 %", size, seconds)
    seconds, _ = timed(f"/v1/sensors?alias={node}")
    page(rows, "`GET /v1/sensors?alias=<node>`", size, seconds)
    seconds, _ = timed(f"/sensors/{one}?range=custom&{month}")
    page(rows, "one sensor's page, 30 d", size, seconds)
    readings = f"/v1/sensors/{one}/readings"
    seconds, _ = timed(f"{readings}?aggregate=1h&{month}")
    page(rows, "`readings?aggregate=1h`, 30 d", size, seconds)
    for bucket in ("1d", "1h"):
        seconds, _ = timed(f"{readings}?aggregate={bucket}")
        add(
            rows,
            f"`readings?aggregate={bucket}`, whole history",
            "< 100 ms",
            size,
            f"{seconds * 1000:.1f} ms",
            seconds < 0.1,
        )
    seconds, _ = timed(readings)
    page(rows, "`readings` first page (1,000)", size, seconds)
    first, last_ts = int(sensor.first_ts), int(sensor.last_ts)
    for depth in (10, 90):
        ts = first + (last_ts - first) * depth // 100 // seeding.PERIOD * seeding.PERIOD
        cursor = f"{sensor.registration_id}-{ts}-{seeding.TYPES[0]}"
        seconds, _ = timed(f"{readings}?cursor={cursor}")
        page(rows, f"`readings?cursor=` page at {depth} %", size, seconds)
    capped = min(args.export_rows, info["legacy_rows"])
    rate, growth, got = export(client, capped, args.export_runs)
    assert got == capped, (got, capped)
    add(
        rows,
        "`/download?format=csv` (first rows)",
        ">= 250 k rows/s, flat memory",
        size,
        f"{rate / 1000:,.0f} k rows/s of {got:,}, RSS +{growth / 2**20:.1f} MB",
        rate >= 250_000 and growth < 50 * 2**20,
    )
    empty_dir = Path(tempfile.mkdtemp(prefix="co2-scale-empty-"))
    empty_app = create_app(config(empty_dir / "empty.sqlite", empty_dir))
    at_size, empty = ingest_rates(app, empty_app, args.posts, args.rounds)
    get_store(empty_app).dispose()
    shutil.rmtree(empty_dir, ignore_errors=True)
    add(
        rows,
        "1-row ingest (`rogue-1x3`), posts/s: at size / empty",
        "within 10 %",
        size,
        f"{at_size:,.0f} / {empty:,.0f} ({at_size / empty - 1:+.1%})",
        at_size >= 0.9 * empty,
    )
    get_store(app).dispose()
    shutil.rmtree(spool, ignore_errors=True)


# ------------------------------------------------------------------------- output


def table(infos: list[dict], rows: list[Row]) -> str:
    """The Markdown table: a column per size, the target, met or missed."""
    names = [info["name"] for info in infos]
    heads = [
        f"{info['name']}: {info['sensors']:,} x {info['days']} d, "
        f"{info['readings'] / 1e6:,.1f} M readings"
        for info in infos
    ]
    lines = [
        "| request (in-process WSGI, warm median) | " + " | ".join(heads)
        + " | target | met |",
        "| --- | " + " | ".join("---:" for _ in heads) + " | --- | --- |",
    ]  # fmt: skip
    for row in rows:
        verdicts = [row.met.get(name) for name in names]
        if all(v is None for v in verdicts):
            met = "–"
        else:
            met = ", ".join(
                f"{name} {'met' if v else 'missed'}"
                for name, v in zip(names, verdicts, strict=True)
                if v is not None
            )
            if all(verdicts):
                met = "met"
        cells = [row.cells.get(name, "–") for name in names]
        lines.append(
            f"| {row.name} | " + " | ".join(cells) + f" | {row.target} | {met} |"
        )
    return "\n".join(lines)


def builds(infos: list[dict]) -> str:
    """One line per size: readings, rollups, file size and build rate."""
    lines = []
    for info in infos:
        how = "reused" if info.get("reused") else "built"
        lines.append(
            f"- {info['name']}: {info['readings']:,} readings, "
            f"{info['rollup_rows']:,} hourly rollup rows, "
            f"{info['legacy_rows']:,} legacy rows, {info['bytes'] / 2**30:.2f} GB; "
            f"{how}: readings in {info['readings_seconds']:,.0f} s "
            f"({info['readings_per_second']:,} readings/s), "
            f"legacy rows in {info['legacy_seconds']:,.0f} s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="small,medium", help=", ".join(SIZES))
    parser.add_argument("--network", action="store_true", help="add 15,000 x 7 d")
    parser.add_argument("--year", action="store_true", help="add 2,000 x 365 d")
    parser.add_argument("--keep", help="directory of the databases, reused if there")
    parser.add_argument("--build-only", action="store_true", help="measure nothing")
    parser.add_argument("--repeat", type=int, default=15, help="runs of a request")
    parser.add_argument("--budget", type=float, default=5.0, help="s per request")
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--export-runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=200, help="posts per round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per database")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    names += [name for name in OPT_IN if getattr(args, name) and name not in names]
    unknown = [name for name in names if name not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; known: {', '.join(SIZES)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    directory = Path(args.keep or tempfile.mkdtemp(prefix="co2-scale-"))
    directory.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    infos, rows = [], []
    for name in args.names:
        info = built(directory, SIZES[name], log)
        infos.append(info)
        if not args.build_only:
            log(f"{name}: measuring")
            measure_size(info, directory, args, rows)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    print(builds(infos))
    if rows:
        print()
        print(table(infos, rows))


if __name__ == "__main__":
    main()

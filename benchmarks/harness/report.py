"""Turn runs into the tables: medians per cell, ratios to the ceilings, targets.

Rates and latencies are medians over the repeats; non-2xx replies and rows are
summed over all repeats, so one bad run cannot hide behind the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness import scenarios as S
from harness.phases import Cell

PREDECESSOR = "co2logserver 0.1.2"


@dataclass
class Summary:
    """A cell reduced to the numbers in the table."""

    scenario: str
    server: str
    workers: int
    connections: int
    requests_per_s: float
    rows_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int
    errors: int
    acked: int
    stored: int | None
    runs: int
    ratio: float | None = None
    ratio_to: str = ""


def median(values: list) -> float | None:
    """Median of the values that exist."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(cell: Cell) -> Summary:
    """Medians of a cell's runs, sums of its failures and rows."""
    runs = cell.runs
    stored = [r["stored"] for r in runs]
    return Summary(
        scenario=cell.scenario,
        server=cell.server,
        workers=cell.workers,
        connections=cell.connections,
        requests_per_s=median([r["requests_per_s"] for r in runs]),
        rows_per_s=median([r["rows_per_s"] for r in runs]),
        p50_ms=median([r["p50_ms"] for r in runs]),
        p99_ms=median([r["p99_ms"] for r in runs]),
        non_2xx=sum(r["non_2xx"] for r in runs),
        errors=sum(r["errors"] for r in runs),
        acked=sum(r["acked"] for r in runs),
        stored=None if None in stored else sum(stored),
        runs=len(runs),
    )


def sqlite_mode(server: str) -> str:
    """The synchronous mode a server row is compared in (0.1.2 runs FULL)."""
    return server.rpartition("/")[2] if "/" in server else "FULL"


def add_ratios(rows: list[Summary]) -> None:
    """Compare each server with its scenario's ceiling at the same cell."""
    flask = {
        (r.scenario, r.workers, r.connections): r.requests_per_s
        for r in rows
        if r.server == "bare-flask"
    }
    sqlite = {
        sqlite_mode(r.server): r.rows_per_s
        for r in rows
        if r.server.startswith("raw SQLite")
    }
    ours = {
        (r.scenario, r.server, r.workers, r.connections): r.requests_per_s for r in rows
    }
    for row in rows:
        scenario = S.BY_NAME.get(row.scenario)
        if scenario is None or row.server in ("bare-flask", "durable-flask"):
            continue
        if scenario.ceiling in S.BY_NAME:  # the same readings through /rogue/v1
            other = ours.get(
                (scenario.ceiling, row.server, row.workers, row.connections)
            )
            if other:
                row.ratio, row.ratio_to = row.requests_per_s / other, scenario.ceiling
        if scenario.ceiling == "flask":
            ceiling = flask.get((row.scenario, row.workers, row.connections))
            if ceiling:
                row.ratio, row.ratio_to = row.requests_per_s / ceiling, "bare Flask"
        elif scenario.ceiling == "sqlite":
            ceiling = sqlite.get(sqlite_mode(row.server))
            if ceiling:
                row.ratio, row.ratio_to = row.rows_per_s / ceiling, "raw SQLite"


def number(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators, or an en dash for none."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


RESULT_HEADER = (
    "scenario",
    "server",
    "w x c",
    "req/s",
    "rows/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "rows acked",
    "rows stored",
    "vs ceiling",
)


def result_rows(rows: Sequence[Summary]) -> list[tuple[str, ...]]:
    """The main table's rows."""
    return [
        (
            r.scenario,
            r.server,
            f"{r.workers} x {r.connections}" if r.workers else "–",
            number(r.requests_per_s),
            number(r.rows_per_s),
            number(r.p50_ms, 1),
            number(r.p99_ms, 1),
            f"{r.non_2xx}" + (f" (+{r.errors} socket)" if r.errors else ""),
            number(r.acked) if r.acked else "–",
            number(r.stored),
            f"{r.ratio:.2f}x {r.ratio_to}" if r.ratio is not None else "",
        )
        for r in rows
    ]


@dataclass
class Verdict:
    """One target: what was required, what was measured, met or not."""

    target: str
    measured: str
    required: str
    met: bool | None  # None: not measured in this run


def durable_targets(rows: Sequence[Summary]) -> list[Verdict]:
    """Issue 16: co2logserver against durable-Flask, same scenario and cell."""
    durable = {
        (r.scenario, r.workers, r.connections): r
        for r in rows
        if r.server == "durable-flask"
    }
    verdicts = []
    for r in rows:
        if not r.server.startswith("co2logserver") or r.server == PREDECESSOR:
            continue
        reference = durable.get((r.scenario, r.workers, r.connections))
        if reference is None or not reference.requests_per_s:
            continue
        batch = S.BY_NAME[r.scenario].rows > 1
        required = (
            S.MIN_DURABLE_BATCH
            if batch
            else (S.MIN_DURABLE_ONE if r.connections == 1 else S.MIN_DURABLE_MANY)
        )
        if batch:
            ratio = r.rows_per_s / reference.rows_per_s if reference.rows_per_s else 0
            unit = "rows/s"
        else:
            ratio, unit = r.requests_per_s / reference.requests_per_s, "req/s"
        what = (
            f"{r.scenario} ({r.server}, {r.workers} x {r.connections}) vs "
            f"durable-Flask {unit}"
        )
        verdicts.append(
            Verdict(what, f"{ratio:.2f}x", f">= {required}x", ratio >= required)
        )
    return verdicts


def ratio_targets(rows: Sequence[Summary]) -> list[Verdict]:
    """Ratios of co2logserver to the ceilings, per scenario and cell."""
    verdicts = []
    for r in rows:
        if not r.server.startswith("co2logserver") or r.server == PREDECESSOR:
            continue
        scenario = S.BY_NAME[r.scenario]
        if scenario.ceiling == "flask":
            required = S.MIN_FLASK_RATIO
        elif scenario.ceiling == "sqlite":
            required = S.MIN_SQLITE_RATIO
        elif scenario.ceiling in S.BY_NAME:
            required = S.MIN_EQUIVALENT_RATIO
        else:
            continue
        what = f"{r.scenario} ({r.server}, {r.workers} x {r.connections}) vs "
        what += {"flask": "bare Flask req/s", "sqlite": "raw SQLite rows/s"}.get(
            scenario.ceiling, f"{scenario.ceiling} req/s"
        )
        measured = f"{r.ratio:.2f}x" if r.ratio is not None else "no ceiling run"
        met = None if r.ratio is None else r.ratio >= required
        verdicts.append(Verdict(what, measured, f">= {required}x", met))
    return verdicts


def read_target(rows: Sequence[Summary]) -> list[Verdict]:
    """The JSON download against 0.1.2, per cell."""
    verdicts = []
    ours = [r for r in rows if r.scenario == "download-json-1000"]
    for r in ours:
        if r.server == PREDECESSOR:
            continue
        old = next(
            (
                p
                for p in ours
                if p.server == PREDECESSOR
                and (p.workers, p.connections) == (r.workers, r.connections)
            ),
            None,
        )
        what = f"download-json-1000 rows/s vs 0.1.2 ({r.workers} x {r.connections})"
        if old is None:
            verdicts.append(
                Verdict(what, "0.1.2 not run (--with-predecessor)", ">= 1.5x", None)
            )
            continue
        ratio = r.rows_per_s / old.rows_per_s
        verdicts.append(
            Verdict(
                what,
                f"{ratio:.2f}x ({number(r.rows_per_s)} vs {number(old.rows_per_s)})",
                f">= {S.MIN_PREDECESSOR_READ_RATIO}x",
                ratio >= S.MIN_PREDECESSOR_READ_RATIO,
            )
        )
    return verdicts


def export_targets(cell: Cell | None) -> list[Verdict]:
    """Streamed CSV export speed and memory."""
    if cell is None:
        return []
    rate = median([r["rows_per_s"] for r in cell.runs])
    growth = max(r["rss_growth_mb"] for r in cell.runs)
    return [
        Verdict(
            "export-csv-1m streaming speed (median)",
            f"{number(rate)} rows/s",
            f">= {number(S.MIN_EXPORT_ROWS_PER_S)} rows/s",
            rate >= S.MIN_EXPORT_ROWS_PER_S,
        ),
        Verdict(
            "export-csv-1m worker memory growth (worst run)",
            f"{growth:.1f} MB",
            f"< {S.MAX_EXPORT_GROWTH_MB} MB",
            growth < S.MAX_EXPORT_GROWTH_MB,
        ),
    ]


def stress_targets(stress: dict | None) -> list[Verdict]:
    """Zero failures and zero lost or duplicated rows under 2 x 64."""
    if not stress:
        return []
    head = (
        f"stress {stress['workers']} x {stress['connections']}, {stress['seconds']:g} s"
    )
    return [
        Verdict(
            f"{head}: non-2xx and socket errors",
            f"{stress['non_2xx']} + {stress['errors']}",
            "0",
            stress["non_2xx"] + stress["errors"] == 0,
        ),
        Verdict(
            f"{head}: acknowledged rows lost / duplicated",
            f"{stress['lost']} / {stress['rows_duplicated']} (acked "
            f"{number(stress['rows_acked'] + stress['readings_acked'])}, stored "
            f"{number(stress['rows_stored'] + stress['readings_stored'])})",
            "0 / 0",
            stress["lost"] == 0 and stress["rows_duplicated"] == 0,
        ),
    ]


def footprint_targets(footprint: dict) -> list[Verdict]:
    """Worker memory after the bulk ingest; bytes per stored reading."""
    verdicts = []
    if "worker_rss_after_readings_mb" in footprint:
        rss = footprint["worker_rss_after_readings_mb"]
        rows = footprint["legacy_rows_stored"]
        readings = footprint["bulk_bytes_per_reading"]["readings"]
        verdicts.append(
            Verdict(
                f"worker RSS after {number(rows)} rows + {number(readings)} readings",
                f"{rss:.1f} MB",
                f"< {S.MAX_WORKER_RSS_MB} MB",
                rss < S.MAX_WORKER_RSS_MB,
            )
        )
    samples = dict(footprint.get("posts_bytes_per_reading", {}))
    if "bulk_bytes_per_reading" in footprint:
        samples["100-observation posts"] = footprint["bulk_bytes_per_reading"]
    for name, sample in samples.items():
        value = sample["bytes_per_reading"]
        verdicts.append(
            Verdict(
                f"readings table bytes/reading, {name}, {number(sample['readings'])} "
                "readings",
                f"{value:.1f}",
                f"<= {S.MAX_BYTES_PER_READING}",
                value <= S.MAX_BYTES_PER_READING,
            )
        )
    return verdicts


def verdict_rows(verdicts: Sequence[Verdict]) -> list[tuple[str, ...]]:
    """The target table's rows."""
    marks = {True: "met", False: "MISSED", None: "not run"}
    return [(v.target, v.measured, v.required, marks[v.met]) for v in verdicts]


VERDICT_HEADER = ("target", "measured", "required", "result")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-style pipe table, columns padded for reading in a terminal."""
    widths = [
        max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def rst_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A reStructuredText simple table."""
    widths = [
        max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)
    ]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])

"""Benchmark co2logserver's ingest and read paths; print one table of results.

    python benchmarks/run.py                      # everything (about 13 minutes)
    python benchmarks/run.py --with-predecessor   # also co2logserver 0.1.2 from PyPI
    python benchmarks/run.py --quick              # 2 s cells, 1 repeat, smaller data

Needs wrk (``apt-get install wrk``) and gunicorn. Servers listen on 127.0.0.1 only.
Results are also written to benchmarks/results/ as JSON, Markdown and RST.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from harness import footprint, loadgen, phases, report
from harness import scenarios as S
from harness.machine import cpu_idle, machine, source_version
from harness.servers import REPO, ensure_predecessor_venv

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"


def cells(text: str) -> tuple[tuple[int, int], ...]:
    """``1x1,2x32`` as ((workers, connections), ...)."""
    try:
        pairs = [part.lower().split("x") for part in text.split(",") if part.strip()]
        return tuple((int(w), int(c)) for w, c in pairs)
    except ValueError:
        message = "use WORKERSxCONNECTIONS,... e.g. 1x1,2x32"
        raise argparse.ArgumentTypeError(message) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    names = [s.name for s in S.SCENARIOS]
    parser = argparse.ArgumentParser(
        description="Benchmark co2logserver under gunicorn with wrk; print a table.",
        epilog="Scenarios: " + ", ".join(names) + ", stress, footprint.",
    )
    parser.add_argument("--quick", action="store_true", help="2 s cells, 1 repeat")
    parser.add_argument(
        "--with-predecessor",
        action="store_true",
        help="also run co2logserver 0.1.2 from PyPI (installed into a scratch venv)",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda t: [s.strip() for s in t.split(",") if s.strip()],
        help="comma-separated subset (default: all, with stress and footprint)",
    )
    parser.add_argument("--duration", type=float, help="seconds per cell (10)")
    parser.add_argument("--repeats", type=int, help="runs per cell (3)")
    parser.add_argument(
        "--stress-duration", type=float, help="seconds of the 2 x 64 stress run (20)"
    )
    parser.add_argument(
        "--cells", type=cells, help="ingest cells WxC (default 1x1,2x32)"
    )
    parser.add_argument(
        "--read-cells", type=cells, help="read cells WxC (default 2x32)"
    )
    parser.add_argument(
        "--synchronous",
        default="FULL",
        help="CO2LOGSERVER_SQLITE_SYNCHRONOUS modes to compare, e.g. FULL,NORMAL",
    )
    parser.add_argument(
        "--worker-class",
        choices=("gthread", "sync"),
        default="gthread",
        help="co2logserver's gunicorn workers (default gthread, the production "
        "model; the references always run sync workers)",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per gthread worker (8)"
    )
    parser.add_argument(
        "--no-ceilings",
        action="store_true",
        help="skip the bare-Flask and SQLite ceilings",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "co2logserver-bench",
        help="where the 0.1.2 venv is kept",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO,
        help="directory holding the co2logserver package to benchmark (this checkout)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases and server logs"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory for the result files"
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios or ()) - set(names) - {"stress", "footprint"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def options_from(args: argparse.Namespace, workdir: Path) -> phases.Options:
    """Phase options from the command line; --quick only changes the defaults."""
    quick = args.quick
    return phases.Options(
        workdir=workdir,
        duration=args.duration or (2.0 if quick else 10.0),
        repeats=args.repeats or (1 if quick else 3),
        stress_duration=args.stress_duration or (3.0 if quick else 20.0),
        synchronous=tuple(m.strip().upper() for m in args.synchronous.split(",")),
        ceilings=not args.no_ceilings,
        sizes=S.QUICK_SIZES if quick else S.FULL_SIZES,
        ingest_cells=args.cells or S.INGEST_CELLS,
        read_cells=args.read_cells or S.READ_CELLS,
        source=args.source.resolve(),
        worker_class=args.worker_class,
        threads=args.threads,
        log=lambda line: print(line, flush=True),
    )


def selected(args: argparse.Namespace, name: str) -> bool:
    """Whether a scenario (or stress/footprint) is part of this run."""
    return args.scenarios is None or name in args.scenarios


def ingest_phases(args, options: phases.Options, measured: dict) -> list:
    """Ingest scenarios with their ceilings; bytes per reading go to ``measured``."""
    cells: list[phases.Cell] = []
    ingest = [s for s in S.SCENARIOS if s.group == "ingest" and selected(args, s.name)]
    for scenario in ingest:
        print(f"{scenario.name}: {scenario.title}", flush=True)
        cells += phases.ingest_phase(options, scenario, measured)
    if options.ceilings and any(s.ceiling == "sqlite" for s in ingest):
        print("raw SQLite ceiling: executemany, WAL, one commit per 100 rows")
        cells += phases.sqlite_ceiling_phase(options)
    return cells


def footprint_phases(args, options: phases.Options, measured: dict) -> list:
    """Fill one database over HTTP, then export from it and read it back."""
    reads = [s for s in S.SCENARIOS if s.group == "read" and selected(args, s.name)]
    want_export = selected(args, "export-csv-1m")
    if not (reads or want_export or selected(args, "footprint")):
        return []
    print("footprint: filling one worker's database over HTTP", flush=True)
    workdir = phases.server_dir(options, "footprint")
    db, suids, numbers = footprint.fill_footprint_db(options, workdir)
    measured |= numbers
    print(f"  {numbers}", flush=True)
    cells = []
    if want_export:
        print("export-csv-1m: one streamed CSV request at a time", flush=True)
        cells.append(footprint.export_phase(options, db, workdir))
    if reads:
        cells += footprint.read_phase(options, reads, db, suids[0])
    return cells


def run_all(args: argparse.Namespace, options: phases.Options) -> dict:
    """Run every selected phase; return the raw results."""
    measured: dict = {}
    cells = ingest_phases(args, options, measured)
    stress = None
    if selected(args, "stress"):
        print("stress: 2 workers x 64 connections (100-row batches + signed posts)")
        stress = phases.stress_phase(
            options, S.BY_NAME["upload-json-100"], S.BY_NAME["signed-1x3"]
        )
        print(f"  {stress}", flush=True)
    cells += footprint_phases(args, options, measured)
    export = next((c for c in cells if c.scenario == "export-csv-1m"), None)
    return {"cells": cells, "footprint": measured, "stress": stress, "export": export}


def render(results: dict, options: phases.Options, info: dict, command: str) -> dict:
    """The tables as Markdown (printed) and RST (for docs/performance.rst)."""
    rows = [report.summarise(cell) for cell in results["cells"]]
    report.add_ratios(rows)
    verdicts = (
        report.ratio_targets(rows)
        + report.durable_targets(rows)
        + report.stress_targets(results["stress"])
        + report.read_target(rows)
        + report.export_targets(results["export"])
        + report.footprint_targets(results["footprint"])
    )
    table = report.result_rows(rows)
    targets = report.verdict_rows(verdicts)
    heading = (
        f"{options.duration:g} s per run, median of {options.repeats} run(s); "
        "non-2xx and rows are summed over the runs"
    )
    machine_lines = [f"{k}: {v}" for k, v in info.items()]
    markdown = "\n\n".join(
        [
            f"# co2logserver benchmark\n\n`{command}`\n\n" + "  \n".join(machine_lines),
            f"## Results ({heading})",
            report.markdown_table(report.RESULT_HEADER, table),
            "## Targets",
            report.markdown_table(report.VERDICT_HEADER, targets),
        ]
    )
    rst = "\n\n".join(
        [
            report.rst_table(report.RESULT_HEADER, table),
            report.rst_table(report.VERDICT_HEADER, targets),
        ]
    )
    return {"markdown": markdown + "\n", "rst": rst + "\n", "summaries": rows}


def save(results: dict, rendered: dict, info: dict, command: str, out: Path) -> Path:
    """Write JSON, Markdown and RST; ``latest.*`` always points at this run."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    data = {
        "command": command,
        "machine": info,
        "cells": phases.as_dicts(results["cells"]),
        "summaries": [asdict(s) for s in rendered["summaries"]],
        "stress": results["stress"],
        "footprint": results["footprint"],
    }
    for name in (stamp, "latest"):
        (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
        (out / f"{name}.md").write_text(rendered["markdown"])
        (out / f"{name}.rst").write_text(rendered["rst"])
    return out / f"{stamp}.md"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    try:
        loadgen.wrk_binary()
    except loadgen.WrkMissing as error:
        print(error, file=sys.stderr)
        return 2
    command = "python benchmarks/run.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    workdir = Path(tempfile.mkdtemp(prefix="co2logserver-bench-"))
    options = options_from(args, workdir)
    if args.with_predecessor:
        print("co2logserver 0.1.2: preparing its scratch venv", flush=True)
        options = replace(
            options, predecessor_venv=ensure_predecessor_venv(args.cache_dir)
        )
    info = machine()
    info["co2logserver source"] = source_version(options.source)
    info["co2logserver workers"] = (
        f"gthread, {options.threads} threads"
        if options.worker_class == "gthread"
        else "sync"
    )
    idle = cpu_idle()
    info["cpu idle before the run"] = f"{idle:.0%}"
    if idle < 0.9:
        print(
            f"warning: the CPUs are only {idle:.0%} idle: other load lowers results",
            file=sys.stderr,
        )
    started = time.monotonic()
    try:
        results = run_all(args, options)
    finally:
        if args.keep:
            print(f"databases and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rendered = render(results, options, info, command.strip())
    path = save(results, rendered, info, command.strip(), args.output)
    print()
    print(rendered["markdown"])
    print(f"({time.monotonic() - started:.0f} s; saved to {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

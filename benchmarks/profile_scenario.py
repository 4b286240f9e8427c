"""Profile one benchmark scenario: where does a gunicorn worker spend its time?

    pip install py-spy
    python benchmarks/profile_scenario.py upload-json-1         # 1 worker x 1 conn.
    python benchmarks/profile_scenario.py upload-json-100 --connections 8
    python benchmarks/profile_scenario.py export-csv-1m --idle  # wall clock, not CPU

Starts co2logserver with one sync worker, drives it like benchmarks/run.py does,
records the worker with py-spy and prints the functions with the most samples
(own time, then including callees). ``--keep stacks.txt`` keeps the collapsed
stacks for a flame graph tool (speedscope, inferno, flamegraph.pl).
py-spy needs ptrace rights over the worker (root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import client, loadgen, phases
from harness import scenarios as S
from harness.servers import REPO, Server, co2logserver_kind

#: Frames every sample shares (gunicorn's start-up), hidden from the cumulative list.
BASE_FRAMES = ("gunicorn/arbiter.py", "gunicorn/app/", "<frozen runpy>", "__main__")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=[s.name for s in S.SCENARIOS])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument(
        "--idle", action="store_true", help="count waiting (fsync, locks, sockets)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="copy the collapsed stacks here")
    parser.add_argument(
        "--source", type=Path, default=REPO, help="where the co2logserver package is"
    )
    return parser.parse_args(argv)


def record(pid: int, seconds: float, args: argparse.Namespace, out: Path):
    """Start py-spy on ``pid``; returns the process (raw collapsed stacks)."""
    command = ["py-spy", "record", "-p", str(pid), "-d", str(int(seconds))]
    command += ["-r", str(args.rate), "-f", "raw", "-o", str(out), "--nonblocking"]
    if args.idle:
        command.append("--idle")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def drive(
    server: Server, scenario: S.Scenario, args, prepared: Path | str | None
) -> str:
    """Load the server for ``args.seconds``; return a one-line rate summary."""
    if scenario.group == "ingest":
        extra = phases.ingest_args(scenario, prepared)
        result = loadgen.run_wrk(
            server.url, "ingest.lua", args.connections, args.seconds, extra
        )
        return f"{result.requests_per_s:,.0f} req/s, {result.acked:,} rows acked"
    if scenario.group == "read":
        url = server.url + scenario.path.format(suid=prepared)
        result = loadgen.run_wrk(url, "read.lua", args.connections, args.seconds, {})
        return f"{result.requests_per_s:,.1f} req/s"
    deadline = time.monotonic() + args.seconds
    rates = []
    while time.monotonic() < deadline:
        numbers = client.timed_export(server.url, "/download?format=csv", lambda: 0)
        rates.append(numbers["rows_per_s"])
    return f"export: {max(rates):,.0f} rows/s"


def fill(server: Server, scenario: S.Scenario) -> Path | str | None:
    """What the scenario needs before it is recorded.

    Ingest: its sensors, each of which has posted once (as in benchmarks/run.py;
    returns the file of signed sensors or ``None``). Reads: 200,000 legacy rows, or
    one sensor's readings (returns its SUID).
    """
    if scenario.group == "ingest":
        sensors = phases.prepare_sensors(server, scenario)
        phases.warm_up(server, scenario, sensors)
        return sensors
    if scenario.name == "readback-10k":
        return client.fill_readings(server.url, 1)[0]
    client.fill_legacy(server.url, 200_000)
    return None


def summarise(path: Path, top: int) -> str:
    """Top frames by own samples and by samples including callees."""
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a frame's name with a line break in it
            continue
        samples += int(count)
        frames = stack.split(";")
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if not any(base in frame for base in BASE_FRAMES):
                total[frame] += int(count)
    lines = [f"{samples} samples", "", "own time:"]
    lines += [f"{100 * n / samples:6.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"{100 * n / samples:6.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile the scenario and print the summary."""
    args = parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    scenario = S.BY_NAME[args.scenario]
    workdir = Path(tempfile.mkdtemp(prefix="co2logserver-profile-"))
    raw = workdir / "profile.txt"
    kind = co2logserver_kind(args.synchronous.upper(), 2_000_000, args.source)
    try:
        with Server(kind, 1, workdir) as server:
            prepared = fill(server, scenario)
            spy = record(server.worker_pids()[0], args.seconds + 1, args, raw)
            time.sleep(1)  # py-spy attaches
            rate = drive(server, scenario, args, prepared)
            _, errors = spy.communicate(timeout=args.seconds + 60)
            if not raw.exists():
                print(errors.decode(errors="replace"), file=sys.stderr)
                return 1
        print(f"{args.scenario}, 1 worker x {args.connections} connection(s): {rate}")
        print(summarise(raw, args.top))
        if args.keep:
            shutil.copyfile(raw, args.keep)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark still runs: one scenario, one short cell, a table row comes out.

Speed is not checked here (that is what the benchmark is for); only that the
documented command works end to end: gunicorn, wrk with its Lua script, the row
counts and the table.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import in_ci

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def wrk() -> str:
    """wrk's path; a missing wrk skips locally and fails in CI."""
    path = shutil.which("wrk")
    if path is None:
        if in_ci():
            pytest.fail("wrk is missing: apt-get install wrk")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    return path


def table_row(output: str, scenario: str) -> list[str]:
    """The cells of the first result-table row of ``scenario``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == scenario:
            return cells
    raise AssertionError(f"no table row for {scenario} in:\n{output}")


def test_one_short_cell_prints_a_table_row(wrk, tmp_path):
    command = [sys.executable, "benchmarks/run.py", "--scenarios", "upload-json-1"]
    command += ["--cells", "1x1", "--duration", "1", "--repeats", "1"]
    command += ["--no-ceilings", "--output", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr

    row = table_row(done.stdout, "upload-json-1")
    assert row[1:3] == ["co2logserver", "1 x 1"]
    assert float(row[3].replace(",", "")) > 0  # req/s
    summary = json.loads((tmp_path / "latest.json").read_text())["summaries"][0]
    assert summary["non_2xx"] == 0
    assert summary["stored"] >= summary["acked"] > 0
    assert (tmp_path / "latest.rst").read_text().startswith("=")


def test_firmware_protocol_scenarios_are_accepted(wrk, tmp_path):
    """airrohr, Telegraf and TTN requests as lua/ingest.lua builds them: all 2xx."""
    scenarios = "airrohr-10,influx-100,ttn-1x3"
    command = [sys.executable, "benchmarks/run.py", "--scenarios", scenarios]
    command += ["--cells", "1x1", "--duration", "1", "--repeats", "1"]
    command += ["--no-ceilings", "--output", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summaries = json.loads((tmp_path / "latest.json").read_text())["summaries"]
    assert {s["scenario"] for s in summaries} == set(scenarios.split(","))
    for summary in summaries:
        assert summary["non_2xx"] == 0, summary
        assert summary["acked"] > 0, summary
        if summary["scenario"] == "airrohr-10":
            # Receive-time stamps: a node that posts twice in one second stores
            # its values once (dedup), and the count of stored rows may take in a
            # warm-up reply landing late: stored and acked need not be equal.
            assert summary["stored"] > 0, summary
        else:
            assert summary["stored"] >= summary["acked"], summary


@pytest.mark.slow
@pytest.mark.postgres
def test_outage_benchmark_prints_a_clean_row(tmp_path):
    """A 5 s PostgreSQL outage at a low rate: every post answered 2xx, nothing lost
    or stored twice, and the table row says so."""
    from tests.servers import find_pg_bindir

    find_pg_bindir()  # skips locally (fails in CI) without PostgreSQL
    numbers = tmp_path / "outage.json"
    command = [sys.executable, "benchmarks/outage.py", "--outage", "5"]
    command += ["--before", "2", "--after", "4", "--rate", "20", "--sigkill"]
    command += ["--json", str(numbers)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = table_row(done.stdout, "--sigkill")
    assert row[1] == "5 s" and row[-1] == "met", row
    result = json.loads(numbers.read_text())
    assert result["posts"] > 100, result
    assert result["acked"] == result["posts"] - result["unanswered"], result
    assert (result["non_2xx"], result["lost"], result["duplicated"]) == (0, 0, 0)


def test_reads_beside_ingest_prints_both_rows(tmp_path):
    """A tiny database, 1 s rows, gthread only: posts and reads all answered 2xx."""
    command = [sys.executable, "benchmarks/reads_vs_ingest.py", "--sensors", "50"]
    command += ["--legacy-rows", "1000", "--days", "2", "--duration", "1"]
    command += ["--posters", "2", "--readers", "2", "--models", "gthread"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| gthread")
    ]
    assert [row[1] for row in rows] == ["0", "2"], done.stdout
    for row in rows:
        assert float(row[2]) > 0 and row[6] == "0" and row[9] == "0", row
    assert float(rows[1][7]) > 0, rows  # the readers' requests/s
    acked, stored = re.search(
        r"posts acknowledged: ([\d,]+); their readings stored: ([\d,]+)", done.stdout
    ).groups()
    assert acked == stored != "0", done.stdout

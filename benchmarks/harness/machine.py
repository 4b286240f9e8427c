"""What the numbers were measured on: the machine, its load, the code."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def command_output(command: list[str]) -> str:
    """First line of a command's output, or empty."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = ""
    for line in lscpu_lines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    memory = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": command_output(["wrk", "--version"]).split(" [")[0],
        "gunicorn": command_output([sys.executable, "-m", "gunicorn", "--version"]),
        "flask, sqlalchemy": ", ".join(package_version(p) for p in PACKAGES),
    }


PACKAGES = ("flask", "sqlalchemy")


def package_version(name: str) -> str:
    """Installed version of a distribution, or "missing"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def cpu_idle(seconds: float = 1.0) -> float:
    """Share of CPU time that was idle over ``seconds`` (other load skews results)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
        return fields[3] + fields[4], sum(fields)

    idle_before, total_before = sample()
    time.sleep(seconds)
    idle_after, total_after = sample()
    return (idle_after - idle_before) / max(1, total_after - total_before)


def source_version(source: Path) -> str:
    """The benchmarked source: its directory and git commit, marked when edited."""
    commit = command_output(["git", "-C", str(source), "rev-parse", "--short", "HEAD"])
    if not commit:
        return str(source)
    edited = command_output(["git", "-C", str(source), "status", "--porcelain"])
    return f"{source} (git {commit}{', with uncommitted changes' if edited else ''})"


def lscpu_lines() -> list[str]:
    """Every line of ``lscpu``."""
    try:
        done = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10)
        return done.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []

"""Drive a server with wrk and read back what its Lua script counted."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
MARKER = "WRKJSON "


class WrkMissing(RuntimeError):
    """wrk is not installed."""


@dataclass
class WrkResult:
    """One wrk run, as counted by the Lua script (latencies in microseconds)."""

    duration_s: float
    requests: int
    ok: int
    non_2xx: int
    acked: int
    socket_errors: int
    timeouts: int
    p50_us: int
    p99_us: int
    bytes: int

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_binary() -> str:
    """Path of wrk, or :class:`WrkMissing` with the install hint."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not installed: apt-get install wrk (Debian/Ubuntu)")
    return path


def run_wrk(
    url: str,
    script: str,
    connections: int,
    duration: float,
    args: dict[str, object] | None = None,
) -> WrkResult:
    """Run wrk for ``duration`` seconds with ``connections`` and a Lua ``script``.

    One wrk thread per connection up to two: the machine has two cores, and wrk
    needs far less of them than the server.
    """
    threads = max(1, min(2, connections))
    script_args = {"threads": threads, "lua_dir": LUA_DIR, **(args or {})}
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "60s",
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        *(f"{key}={value}" for key, value in script_args.items()),
    ]
    if (args or {}).get("once"):
        stdout, stderr = _run_until_threads_finish(command, threads, duration + 120)
    else:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120
        )
        stdout, stderr = done.stdout, done.stderr
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            counts = json.loads(line[len(MARKER) :])
            counts["duration_s"] = counts.pop("duration_us") / 1e6
            return WrkResult(**counts)
    raise RuntimeError(f"wrk gave no result:\n{stdout}\n{stderr}")


def _run_until_threads_finish(
    command: list[str], threads: int, timeout: float
) -> tuple[str, str]:
    """Run wrk until each of its threads printed ``WRKDONE`` (or ``-d`` ran out).

    A wrk thread can stop itself, but wrk's main thread sleeps for the whole ``-d``
    before it joins them; SIGINT wakes it, and wrk then reports as usual.
    """
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as wrk:
        assert wrk.stderr is not None
        finished, other = 0, []
        for line in wrk.stderr:
            if line.strip() == "WRKDONE":
                finished += 1
                if finished == threads:
                    wrk.send_signal(signal.SIGINT)
                    break
            else:
                other.append(line)
        stdout, rest = wrk.communicate(timeout=timeout)
    return stdout, "".join(other) + rest

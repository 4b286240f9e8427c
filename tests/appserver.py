"""Run co2logserver under gunicorn on 127.0.0.1 for end-to-end tests.

The server is a subprocess with its own configuration in its environment; it is
stopped by PID (its workers with it), and :meth:`GunicornServer.crash` kills master
and workers with SIGKILL to simulate a crash. It binds port 0 and reads the port it
got from its own log, so test runs side by side never talk to each other's servers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from tests.servers import LOCALHOST, log_tail, pid_alive

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
LISTENING = re.compile(r"Listening at: http://[\d.]+:(\d+) \((\d+)\)")


def control_socket_args() -> list[str]:
    """gunicorn 24+ opens a control socket at one fixed path: keep ours closed."""
    from gunicorn.config import KNOWN_SETTINGS

    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class GunicornServer:
    """``gunicorn 'co2logserver:create_app()'`` with ``CO2LOGSERVER_*`` settings."""

    def __init__(
        self,
        workdir: Path,
        settings: Mapping[str, str],
        workers: int = 2,
        extra_env: Mapping[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        """Describe the server; nothing runs before :meth:`start`."""
        self.workdir = workdir
        self.settings = dict(settings)
        self.workers = workers
        self.extra_env = dict(extra_env or {})
        self.extra_args = extra_args
        self.port = 0
        self.url = ""
        self.log_path = workdir / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        """The test's environment without co2logserver settings, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
        env.update({f"CO2LOGSERVER_{k}": v for k, v in self.settings.items()})
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Start gunicorn and wait until ``/health`` answers 200."""
        self.log_path = self.workdir / f"gunicorn-{time.monotonic_ns()}.log"
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{LOCALHOST}:0",
            *control_socket_args(),
            "--workers", str(self.workers),
            "--timeout", "120",
            "--graceful-timeout", "5",
            "--log-level", "info",
            *self.extra_args,
            "co2logserver:create_app()",
        ]  # fmt: skip
        self.port, self.url = 0, ""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_healthy()

    def listening_port(self) -> int | None:
        """The port our master logged that it listens on, once it has."""
        for port, pid in LISTENING.findall(self.log_path.read_text(errors="replace")):
            if self.proc is not None and int(pid) == self.proc.pid:
                return int(port)
        return None

    def wait_healthy(self) -> None:
        """Wait for the port, then poll ``/health`` until it answers 200 (bounded)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            if not self.port:
                self.port = self.listening_port() or 0
                self.url = f"http://{LOCALHOST}:{self.port}" if self.port else ""
                time.sleep(0.05)
                continue
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"gunicorn not healthy after {STARTUP_TIMEOUT}s:\n{self.log()}"
        )

    def worker_pids(self) -> list[int]:
        """PIDs of the master's children (its workers)."""
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """Stop gracefully by PID (SIGTERM); SIGKILL master and workers if it hangs."""
        if self.proc is None:
            return
        self.proc.terminate()  # the master stops its workers itself
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.crash()
            return
        self.proc = None

    def crash(self) -> None:
        """SIGKILL the workers and the master at once, as a crash would."""
        if self.proc is None:
            return
        workers = self.worker_pids()
        self._kill(workers)
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(pid_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def _kill(pids: list[int]) -> None:
        """SIGKILL the given processes, which this server started."""
        for pid in pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log(self) -> str:
        """The tail of gunicorn's output."""
        return log_tail(self.log_path, 80)

    def __enter__(self) -> GunicornServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

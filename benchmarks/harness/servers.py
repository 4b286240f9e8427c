"""Start the servers under test with gunicorn, on 127.0.0.1, and stop them again.

Each kind is served on a fresh SQLite file: this tree's co2logserver (by default
in gthread workers, the documented production model, whose threads share commits),
the bare-Flask and durable-Flask references and co2logserver 0.1.2 from a scratch
venv (sync workers: one request at a time per worker). Worker memory is read from
``/proc``, so no extra package is needed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOCALHOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
PREDECESSOR_VERSION = "0.1.2"
# 0.1.2 calls send_file(attachment_filename=...) and imports BadRequest from
# flask.wrappers: both went away in Flask/Werkzeug 2.2, so its venv pins older ones.
PREDECESSOR_PINS = ("flask<2.2", "werkzeug<2.2", "gunicorn")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """The caller's environment without any co2logserver or OpenSenseMap settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CO2LOGSERVER_", "SENSEMAP_", "PYTHONPATH"))
    }


def ends_with_its_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies (Linux).

    A run killed from outside (a timeout's SIGKILL) cannot stop its servers; without
    this they would keep their ports and cores after it.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stopping them is then the operator's


@dataclass
class ServerKind:
    """How to serve one application with gunicorn."""

    name: str
    python: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    chdir: Path | None = None
    config_file: str | None = None
    worker_class: str = "sync"
    threads: int = 1


def co2logserver_kind(
    synchronous: str,
    max_rows: int,
    source: Path = REPO,
    worker_class: str = "gthread",
    threads: int = 8,
) -> ServerKind:
    """co2logserver imported from ``source`` (this checkout), not site-packages."""
    env = {
        "PYTHONPATH": str(source),
        "CO2LOGSERVER_RATELIMIT_ENABLED": "False",
        "CO2LOGSERVER_SQLITE_SYNCHRONOUS": synchronous,
        "CO2LOGSERVER_MAX_LIMIT_OF_ROWS": str(max_rows),
        "CO2LOGSERVER_READINGS_MAX_PAGE_SIZE": "100000",
    }
    defaults = (source / "co2logserver" / "config_default.py").read_text()
    if "CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS" in defaults:
        # The TTN scenario's webhook secret (lua/ingest.lua sends it); an older
        # checkout (--source) refuses a key it does not know.
        env["CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS"] = '["bench"]'
    return ServerKind(
        name="co2logserver" if synchronous == "FULL" else f"co2logserver/{synchronous}",
        python=sys.executable,
        app="co2logserver:create_app()",
        env=env,
        worker_class=worker_class,
        threads=threads if worker_class == "gthread" else 1,
    )


def ceiling_kind() -> ServerKind:
    """The bare Flask app: parses the body, stores nothing."""
    return ServerKind(
        name="bare-flask",
        python=sys.executable,
        app="harness.ceiling_app:create_app()",
        chdir=BENCH_DIR,
    )


def durable_ceiling_kind() -> ServerKind:
    """The durable-Flask reference: parses, appends to a file, fsyncs, answers."""
    return ServerKind(
        name="durable-flask",
        python=sys.executable,
        app="harness.ceiling_app:create_app(durable=True)",
        chdir=BENCH_DIR,
    )


def predecessor_kind(venv: Path) -> ServerKind:
    """co2logserver 0.1.2, configured through a config file as it expects."""
    return ServerKind(
        name=f"co2logserver {PREDECESSOR_VERSION}",
        python=str(venv / "bin" / "python"),
        app="co2logserver:application",
        # Its default MAX_LIMIT_OF_ROWS (1000) is kept: 0.1.2 sorts up to that many
        # rows of the whole table on every download, so a larger cap is unfair to it.
        config_file="CO2LOGSERVER_DB = {db!r}\n",
    )


def ensure_predecessor_venv(cache: Path) -> Path:
    """Install co2logserver 0.1.2 into a scratch venv under ``cache`` (once)."""
    venv = cache / f"venv-co2logserver-{PREDECESSOR_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return venv
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + [f"co2logserver=={PREDECESSOR_VERSION}", *PREDECESSOR_PINS],
        check=True,
    )
    marker.write_text("ok\n")
    return venv


class Server:
    """One gunicorn master with ``workers`` workers on a fresh database."""

    def __init__(
        self,
        kind: ServerKind,
        workers: int,
        workdir: Path,
        db: Path | str | None = None,
    ):
        self.kind = kind
        self.workers = workers
        self.workdir = workdir
        self.db = db or workdir / "bench.sqlite"  # a file, or a database URL
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The gunicorn command line."""
        command = [self.kind.python, "-m", "gunicorn"]
        command += ["--worker-class", self.kind.worker_class]
        if self.kind.worker_class == "gthread":
            command += ["--threads", str(self.kind.threads)]
        command += ["-w", str(self.workers), "-b", f"{LOCALHOST}:{self.port}"]
        # A 1,000,000-row export takes longer than gunicorn's default 30 s timeout
        # on a slow server; the benchmark wants to measure it, not see it killed.
        command += ["--timeout", "300", "--log-level", "warning"]
        if self.kind.chdir:
            command += ["--chdir", str(self.kind.chdir)]
        return command + [self.kind.app]

    def environment(self, max_rows: int) -> dict[str, str]:
        """Environment of the server: the kind's settings and this database."""
        env = clean_environment() | self.kind.env
        if self.kind.config_file is not None:
            config = self.workdir / "predecessor_config.py"
            config.write_text(
                self.kind.config_file.format(db=str(self.db), max_rows=max_rows)
            )
            env["CO2LOGSERVER_CONFIG"] = str(config)
        else:
            env["CO2LOGSERVER_DB"] = str(self.db)
        return env

    def start(self, max_rows: int = 2_000_000) -> Server:
        """Start gunicorn and wait until every worker answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "gunicorn.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=self.environment(max_rows),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=ends_with_its_parent,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for all workers and one answer on ``/download?format=json&number=1``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind.name} exited; see {self.workdir / 'gunicorn.log'}"
                )
            if len(self.worker_pids()) == self.workers and self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind.name} did not start within {timeout:.0f} s")

    def answers(self) -> bool:
        """Whether the server answers HTTP at all (any status)."""
        try:
            with urllib.request.urlopen(self.url + "/download?format=json&number=1"):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """PIDs of the gunicorn workers (children of the master)."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def worker_rss(self) -> list[int]:
        """Resident memory of each worker, in bytes."""
        return [rss_bytes(pid) for pid in self.worker_pids()]

    def stop(self) -> None:
        """Stop gunicorn gracefully, killing it after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from ``/proc/<pid>/status``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0

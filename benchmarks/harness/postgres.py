"""A private PostgreSQL cluster on 127.0.0.1 that the outage benchmark stops and starts.

The same recipe as ``tests/servers.py`` (which the benchmark does not import): the
newest ``initdb``/``pg_ctl`` under ``/usr/lib/postgresql``, a cluster in a temporary
directory with trust authentication, a free port, its Unix socket in that directory,
run as the ``postgres`` user when we are root. Unlike the test cluster it keeps
PostgreSQL's default durability (``fsync`` on): a benchmark measures the real thing.
Stopped by ``pg_ctl stop -m fast`` on its own data directory, never by name.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.servers import LOCALHOST, free_port

DATABASE = "co2logserver_bench"
SUPERUSER = "postgres"
TIMEOUT = 60


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (highest version wins)."""
    found = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if (d / "initdb").exists() and (d / "pg_ctl").exists()
    ]
    if found:
        return max(found, key=lambda d: [int(n) for n in re.findall(r"\d+", str(d))])
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: "
        "apt-get install postgresql"
    )


class Postgres:
    """A cluster in a fresh directory: :meth:`init` once, then stop and start it."""

    def __init__(self) -> None:
        self.bin = bindir()
        # A directory of its own: the postgres user must be able to enter it.
        self.workdir = Path(tempfile.mkdtemp(prefix="co2logserver-bench-pg-"))
        self.datadir = self.workdir / "pgdata"
        self.log_path = self.workdir / "postgresql.log"
        self.port = free_port()
        self.url = (
            f"postgresql+psycopg://{SUPERUSER}@{LOCALHOST}:{self.port}/{DATABASE}"
        )
        self.run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as.pw_name, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if done.returncode != 0:
            tail = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(
                f"{shlex.join(command)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{tail[-2000:]}"
            )

    def init(self) -> Postgres:
        """Create the cluster and the benchmark's database, and leave it running."""
        if self.run_as is not None:
            os.chown(self.workdir, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(
            str(self.bin / "initdb"), "--pgdata", str(self.datadir),
            "--username", SUPERUSER, "--auth", "trust", "--encoding", "UTF8",
            "--locale", "C", "--no-sync",
        )  # fmt: skip
        self.start()
        self._run(
            str(self.bin / "createdb"), "-h", LOCALHOST, "-p", str(self.port),
            "-U", SUPERUSER, DATABASE,
        )  # fmt: skip
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = shlex.join(
            [
                "-c", f"listen_addresses={LOCALHOST}",
                "-c", f"unix_socket_directories={self.workdir}",
                "-c", "max_connections=200",
                "-p", str(self.port),
            ]
        )  # fmt: skip
        self._run(
            str(self.bin / "pg_ctl"), "--pgdata", str(self.datadir),
            "--log", str(self.log_path), "--options", options,
            "--wait", "--timeout", str(TIMEOUT), "start",
        )  # fmt: skip
        self._wait_port(open_=True)

    def stop(self) -> None:
        """Fast shutdown: connections are cut, as in an upgrade or failover."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        self._run(
            str(self.bin / "pg_ctl"), "--pgdata", str(self.datadir),
            "--mode", "fast", "--wait", "--timeout", str(TIMEOUT), "stop",
        )  # fmt: skip
        self._wait_port(open_=False)

    def _wait_port(self, open_: bool) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                    listening = True
            except OSError:
                listening = False
            if listening == open_:
                return
            time.sleep(0.05)
        state = "accept" if open_ else "stop accepting"
        raise RuntimeError(f"PostgreSQL did not {state} connections on {self.port}")

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

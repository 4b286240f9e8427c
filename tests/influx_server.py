"""A private InfluxDB 1.x (Debian's ``influxd``) on 127.0.0.1 for oracle tests.

It runs in a temporary directory with its own config: meta, data and WAL there,
usage reporting off, the HTTP API and the RPC (backup) service on free loopback
ports, every other service off. It is stopped by PID. A missing ``influxd`` skips
the tests that need it, or fails them under ``CI=true`` (:func:`find_binary`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.servers import (
    LOCALHOST,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    ServerError,
    find_binary,
    free_port,
    log_tail,
    make_tempdir,
)

CONFIG = """\
reporting-disabled = true
bind-address = "{host}:{rpc_port}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "{host}:{http_port}"
  log-enabled = false
"""


class InfluxServer:
    """``influxd run -config <tmp>/influxdb.conf``; ``url`` once started."""

    def __init__(self, workdir: Path) -> None:
        """Write the config; nothing runs before :meth:`start`."""
        self.workdir = workdir
        self.http_port = free_port()
        self.url = f"http://{LOCALHOST}:{self.http_port}"
        self.config = workdir / "influxdb.conf"
        self.config.write_text(
            CONFIG.format(
                host=LOCALHOST,
                rpc_port=free_port(),
                http_port=self.http_port,
                dir=workdir,
            )
        )
        self.log_path = workdir / "influxd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start ``influxd`` and wait until ``/ping`` answers 204."""
        binary = find_binary("influxd", "influxdb")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "run", "-config", str(self.config)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"influxd exited early:\n{log_tail(self.log_path)}")
            try:
                if requests.get(self.url + "/ping", timeout=1).status_code == 204:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"influxd not up after {STARTUP_TIMEOUT}s")

    def stop(self) -> None:
        """Stop it by PID (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def query(self, q: str, db: str | None = None, **params) -> dict:
        """Run InfluxQL (POST, as writes of the schema need) and return the JSON."""
        data = {"q": q, **({"db": db} if db else {}), **params}
        answer = requests.post(self.url + "/query", data=data, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def write(self, db: str, body: bytes, precision: str | None = None):
        """POST line protocol to ``/write``; the response."""
        params = {"db": db, **({"precision": precision} if precision else {})}
        return requests.post(self.url + "/write", params=params, data=body, timeout=10)


@contextmanager
def running_influxdb() -> Iterator[InfluxServer]:
    """A started private ``influxd``, stopped and its directory removed after."""
    workdir = make_tempdir("influxdb")
    server = InfluxServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

"""A frozen PostgreSQL (hung host, paused VM, partition): answers come in bounded time.

Unlike a clean stop, a frozen server closes nothing: its kernel still accepts
connections and acknowledges every byte, and no answer ever comes. The server here
is really frozen (SIGSTOP to the postmaster and every backend) under a real gunicorn
over HTTP; ingest must answer within the configured bound (503 with ``Retry-After``
with the spool off, 200 with it on, the posts stored once after the thaw),
``/health`` within its own, and everything works again once the server is thawed.
The elapsed-time checks are correctness bounds (three times the configured
timeout), not speed measurements.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.appserver import GunicornServer
from tests.conftest import observations
from tests.servers import PostgresServer
from tests.stored import eventually

pytestmark = pytest.mark.postgres

DB_TIMEOUT = 2
HEALTH_TIMEOUT = 2
RETRY_AFTER = "7"
TS = 1_700_000_000


def server_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer, walwriter …)."""
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text()
    return [postmaster, *(int(pid) for pid in children.split())]


@contextlib.contextmanager
def frozen(server: PostgresServer) -> Iterator[None]:
    """SIGSTOP every process of ``server`` (which this test run started); thaw after."""
    assert server.pid is not None
    pids = [server.pid]
    try:
        signal_process(server.pid, signal.SIGSTOP)  # first: then it forks no more
        pids = server_processes(server.pid)
        for pid in pids[1:]:
            signal_process(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            signal_process(pid, signal.SIGCONT)


def signal_process(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid`` unless it has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def timed(method: str, url: str, **kwargs) -> tuple[requests.Response, float]:
    """The response and the seconds it took (the client itself would wait 60 s)."""
    started = time.monotonic()
    response = requests.request(method, url, timeout=60, **kwargs)
    return response, time.monotonic() - started


def stored(url: str, marker: str) -> int:
    """Legacy rows carrying ``marker``, read with a connection of the test's own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM data WHERE marker = :m"), {"m": marker}
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(params=["spool-off", "spool-on"])
def gunicorn(
    request, postgres_server, tmp_path
) -> Iterator[tuple[GunicornServer, bool]]:
    """Two workers on the freezable server, with short bounds; whether they spool."""
    settings = {
        "DB": postgres_server.url,
        "DB_TIMEOUT": str(DB_TIMEOUT),
        "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
        "RETRY_AFTER": RETRY_AFTER,
        "RATELIMIT_ENABLED": "False",
        "SPOOL_DIR": str(tmp_path / "spool"),
    }
    if request.param == "spool-off":
        settings["SPOOL_MAX_BYTES"] = "0"
    with GunicornServer(tmp_path, settings, workers=2) as server:
        yield server, request.param == "spool-on"


def ingest(server: GunicornServer, suid: str, marker: str, ts: int):
    """A v1 readings post and a legacy upload, each with the seconds it took."""
    return {
        "readings": timed(
            "POST", f"{server.url}/v1/sensors/{suid}/readings", data=observations(ts)
        ),
        "upload": timed("POST", f"{server.url}/upload", json={"marker": [marker]}),
    }


def test_frozen_postgres_answers_in_bounded_time(gunicorn, postgres_server):
    """Spool off: 503 + Retry-After within the bound. Spool on: 200 within the
    bound, and the posts are in the database once it is thawed."""
    server, spooling = gunicorn
    suid = str(uuid.uuid4())
    # Both workers hold pooled connections to the server before it freezes.
    for ts in range(TS, TS + 4):
        assert ingest(server, suid, "before", ts)["upload"][0].status_code == 200

    during = f"during-{uuid.uuid4().hex}"
    with frozen(postgres_server):
        replies = {
            f"{name}-{attempt}": reply
            for attempt in range(2)
            for name, reply in ingest(server, suid, during, TS + 10 + attempt).items()
        }
        health = [timed("GET", server.url + "/health") for _ in range(2)]

    for name, (reply, seconds) in replies.items():
        assert seconds < 3 * DB_TIMEOUT, (name, seconds)
        if spooling:
            assert reply.status_code == 200, (name, reply.text)
        else:
            assert reply.status_code == 503, (name, reply.text)
            assert reply.headers["Retry-After"] == RETRY_AFTER, name
            assert "error" in reply.json(), name
    for reply, seconds in health:
        assert seconds < 3 * HEALTH_TIMEOUT, seconds
        assert reply.json()["database"] == "unreachable"
        if spooling:
            assert (reply.status_code, reply.json()["status"]) == (200, "degraded")
        else:
            assert (reply.status_code, reply.json()["status"]) == (503, "unavailable")
            assert reply.headers["Retry-After"] == RETRY_AFTER

    after = f"after-{uuid.uuid4().hex}"
    thawed = ingest(server, suid, after, TS + 20)
    assert {name: r.status_code for name, (r, _s) in thawed.items()} == {
        "readings": 200,
        "upload": 200,
    }
    assert requests.get(server.url + "/health", timeout=30).status_code == 200
    expected = 2 if spooling else 0
    assert eventually(lambda: stored(postgres_server.url, during) == expected)
    assert stored(postgres_server.url, during) == expected
    assert stored(postgres_server.url, after) == 1
    assert "Traceback" not in server.log(), server.log()

"""Database outage with the spool off: ingest answers 503, then recovers by itself.

(With the spool on, the default, ingest keeps answering 200: tests/test_spool.py.)

One app object lives through the whole outage (no restart): while PostgreSQL is
down, ingest and ``/health`` answer 503 with ``Retry-After`` and nothing crashes;
when it is back, the same app stores again and what was acknowledged before is
still there.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import observations

pytestmark = pytest.mark.postgres

TS = 1_700_000_000


@pytest.fixture
def pg_app(postgres_server, build_app):
    """An app on the stoppable PostgreSQL server, retried after 7 seconds."""
    return build_app(
        {"DB": postgres_server.url, "RETRY_AFTER": 7, "SPOOL_MAX_BYTES": 0}
    )


def stored_rows(url: str, marker: str) -> int:
    """Rows of the data table carrying ``marker``, read with a fresh connection."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM data WHERE marker = :m"), {"m": marker}
            ).scalar_one()
    finally:
        engine.dispose()


def ingest_requests(client, suid: str, marker: str) -> dict:
    """One request of each ingest route, with distinct data."""
    return {
        "upload": client.post("/upload", json={"marker": [marker, marker]}),
        "readings": client.post(
            f"/v1/sensors/{suid}/readings", data=observations(TS + 1)
        ),
        "rogue": client.post(
            f"/rogue/v1/sensors/{suid}/readings", data=observations(TS + 2)
        ),
        "register": client.put(f"/v1/sensors/{uuid.uuid4()}", json={}),
    }


def test_outage_answers_503_and_recovers_without_restart(
    pg_app, postgres_server, caplog
):
    client = pg_app.test_client()
    suid = str(uuid.uuid4())
    before = f"before-{uuid.uuid4().hex}"
    assert client.post("/upload", json={"marker": [before]}).status_code == 200
    assert (
        client.post(f"/v1/sensors/{suid}/readings", data=observations(TS)).status_code
        == 200
    )
    assert client.get("/health").status_code == 200

    postgres_server.stop()
    during = f"during-{uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING):
        replies = ingest_requests(client, suid, during)
        health = client.get("/health")
        readback = client.get(f"/v1/sensors/{suid}/readings")
    for name, reply in replies.items():
        assert reply.status_code == 503, (name, reply.data)
        assert reply.headers["Retry-After"] == "7", name
        assert "error" in reply.get_json(), name
    assert health.status_code == 503
    assert health.get_json()["database"] == "unreachable"
    assert health.headers["Retry-After"] == "7"
    assert readback.status_code == 503
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    postgres_server.start()
    assert client.get("/health").status_code == 200
    after = f"after-{uuid.uuid4().hex}"
    replies = ingest_requests(client, suid, after)
    assert {name: r.status_code for name, r in replies.items()} == dict.fromkeys(
        replies, 200
    )
    assert stored_rows(postgres_server.url, before) == 1
    assert stored_rows(postgres_server.url, during) == 0
    assert stored_rows(postgres_server.url, after) == 2
    timestamps = [
        r["timestamp"]
        for r in client.get(f"/v1/sensors/{suid}/readings").get_json()["readings"]
    ]
    assert sorted(set(timestamps)) == [TS, TS + 1, TS + 2]


def test_outage_on_a_running_gunicorn_recovers(postgres_server, tmp_path):
    """The same through real HTTP: workers keep running and recover by themselves."""
    import requests

    from tests.appserver import GunicornServer

    settings = {
        "DB": postgres_server.url,
        "RATELIMIT_ENABLED": "False",
        "SPOOL_MAX_BYTES": "0",
    }
    with GunicornServer(tmp_path, settings, workers=2) as server:
        postgres_server.stop()
        down = [
            requests.post(server.url + "/upload", json={"x": [1]}, timeout=30)
            for _ in range(4)
        ]
        health = requests.get(server.url + "/health", timeout=30)
        postgres_server.start()
        up = [
            requests.post(server.url + "/upload", json={"x": [1]}, timeout=30)
            for _ in range(4)
        ]
        workers = server.worker_pids()
        log = server.log()
    assert [r.status_code for r in down] == [503] * 4
    assert all(r.headers["Retry-After"] == "10" for r in down)
    assert health.status_code == 503
    assert [r.status_code for r in up] == [200] * 4
    assert len(workers) == 2
    assert "Traceback" not in log and "Worker exiting" not in log, log

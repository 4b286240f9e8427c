"""A sensor's first burst after power-on: concurrent first posts and PUTs (#11).

Twelve clients at once post the first readings of a new SUID, or PUT it, against a
real gunicorn with four workers; none may get a 500 (a unique violation on the
sensors table), on SQLite or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import requests

from tests.appserver import GunicornServer
from tests.conftest import SensorActions

CLIENTS = 12
ROUNDS = 5


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path):
    db = str(tmp_path / "co2.sqlite")
    if request.param == "postgres":
        db = request.getfixturevalue("pg_database_url")
    settings = {"DB": db, "RATELIMIT_ENABLED": "False"}
    with GunicornServer(tmp_path, settings, workers=4) as running:
        yield running.url


def at_once(send) -> list:
    """Run ``send(session, index)`` from CLIENTS threads released together."""
    barrier = threading.Barrier(CLIENTS)
    results: list = [None] * CLIENTS
    sessions = [requests.Session() for _ in range(CLIENTS)]

    def run(index: int) -> None:
        barrier.wait(10)
        results[index] = send(sessions[index], index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_first_posts_of_a_new_suid(server):
    now = int(time.time())
    for _ in range(ROUNDS):
        suid = SensorActions.new_suid()

        def post(session, index, suid=suid):
            body = json.dumps([{"timestamp": now - index, "readings": {"PM10": index}}])
            url = f"{server}/rogue/v1/sensors/{suid}/readings"
            return session.post(url, data=body, timeout=30).status_code

        assert at_once(post) == [200] * CLIENTS
        url = f"{server}/v1/sensors/{suid}/readings"
        readings = requests.get(url, timeout=10).json()["readings"]
        assert sorted(r["value"] for r in readings) == list(range(CLIENTS))


def test_concurrent_puts_of_a_new_suid(server):
    for _ in range(ROUNDS):
        suid = SensorActions.new_suid()

        def put(session, _index, suid=suid):
            response = session.put(f"{server}/v1/sensors/{suid}", json={}, timeout=30)
            return response.status_code, response.text

        results = at_once(put)
        # One PUT registers the sensor; the others re-register a secure sensor
        # without its SECRET: 409, never a 500.
        assert sorted(s for s, _ in results) == [200] + [409] * (CLIENTS - 1)
        secret = next(text for status, text in results if status == 200)
        body = json.dumps([{"age": 0, "readings": {"PM10": 1.0}}]).encode()
        digest = hashlib.sha256(body + secret.encode()).hexdigest()
        response = requests.post(
            f"{server}/v1/sensors/{suid}/readings",
            data=body,
            headers={"Authorization": f"OpenSmogHash {digest}"},
            timeout=10,
        )
        assert response.status_code == 200

"""Schemathesis fuzzes a live gunicorn from ``/openapi.json``, on SQLite and PostgreSQL.

Each operation of the document gets ``CO2LOGSERVER_FUZZ_EXAMPLES`` generated
requests (default 15, seed fixed) sent over real HTTP. Asserted: no 5xx, every
error is JSON ``{"error": str}``, every answer within RESPONSE_BOUND seconds, and a
refused request (4xx) leaves the row count of every table as it was (counted on a
connection of the test's own before and after each request).
A longer run: ``CO2LOGSERVER_FUZZ_EXAMPLES=500 python -m pytest
tests/test_schemathesis.py``.
"""

from __future__ import annotations

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from sqlalchemy import create_engine

from tests.appserver import GunicornServer
from tests.stored import row_counts

EXAMPLES = int(os.environ.get("CO2LOGSERVER_FUZZ_EXAMPLES", "15"))
RESPONSE_BOUND = 5.0


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path):
    """A gunicorn -w 2 on a fresh SQLite file or PostgreSQL database, and an engine
    of the test's own on the same database."""
    if request.param == "sqlite":
        db = str(tmp_path / "fuzz.sqlite")
        url = "sqlite:///" + db
    else:
        db = url = request.getfixturevalue("pg_database_url")
    settings_ = {"DB": db, "RATELIMIT_ENABLED": "False"}
    engine = create_engine(url)
    try:
        with GunicornServer(tmp_path, settings_, workers=2) as server:
            yield server.url, engine
    finally:
        engine.dispose()


def check(response, elapsed: float, label: str, html_errors: bool = False) -> None:
    """The properties every answer must have (owners' forms answer HTML errors)."""
    assert response.status_code < 500, (label, response.status_code, response.text)
    assert elapsed < RESPONSE_BOUND, (label, elapsed)
    if response.status_code >= 400 and html_errors:
        headers = {k.lower(): v for k, v in response.headers.items()}
        kind = headers.get("content-type", [""])[0]  # schemathesis: lists
        assert kind.startswith("text/html"), (label, response.status_code, kind)
    elif response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (
            label,
            response.text,
        )


def test_no_server_errors_from_generated_requests(live):
    live_url, engine = live
    schema = schemathesis.openapi.from_url(live_url + "/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        html_errors = "owners" in operation.definition.raw.get("tags", [])

        @seed(11)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case):
            before = row_counts(engine)
            start = time.monotonic()
            response = case.call(base_url=live_url, timeout=RESPONSE_BOUND + 5)
            # run() is called in this iteration, so label is the current one.
            check(response, time.monotonic() - start, label, html_errors)  # noqa: B023
            if 400 <= response.status_code < 500:
                assert row_counts(engine) == before, (label, response.text)  # noqa: B023

        run()

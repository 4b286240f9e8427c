"""``GET /metrics`` (Prometheus text format) and ``GET /health``.

Counters are per process (and summed over gunicorn workers in multiprocess mode),
so in-process tests compare a scrape before and after the requests they make.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import observations, opensmog_hash

TS = 1_700_000_000


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of a ``/metrics`` answer: (name, labels) -> value."""
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    return parse(reply.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


class Delta:
    """What changed in the metrics between construction and :meth:`of`."""

    def __init__(self, client):
        self.client = client
        self.before = scrape(client)

    def of(self, name: str, **labels: str) -> float:
        after = scrape(self.client)
        return value(after, name, **labels) - value(self.before, name, **labels)


REQUESTS = "co2logserver_http_requests_total"
REJECTED = "co2logserver_payloads_rejected_total"


def test_requests_are_counted_by_endpoint_method_and_status(client):
    delta = Delta(client)
    client.get("/health")
    client.get("/health")
    client.get("/no/such/page/" + uuid.uuid4().hex)
    client.delete("/upload")
    assert delta.of(REQUESTS, endpoint="pages.health", method="GET", status="200") == 2
    # unrouted paths share one label, so random URLs cannot grow the series
    assert delta.of(REQUESTS, endpoint="none", method="GET", status="404") == 1
    assert delta.of(REQUESTS, endpoint="none", method="DELETE", status="405") == 1


def test_rows_and_readings_stored_are_counted(client, sensors):
    delta = Delta(client)
    assert client.post("/upload", json={"co2": [1, 2, 3]}).status_code == 200
    suid = sensors.new_suid()
    body = observations(TS, TS + 1)  # two readings each
    assert sensors.post_rogue(suid, body).status_code == 200
    assert sensors.post_rogue(suid, body).status_code == 200  # a resend stores nothing
    assert delta.of("co2logserver_rows_stored_total") == 3
    assert delta.of("co2logserver_readings_stored_total") == 4


def test_rejected_payloads_are_counted_by_reason(make_app):
    client = make_app(MAX_CONTENT_LENGTH=2000).test_client()
    suid = str(uuid.uuid4())
    secret = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    delta = Delta(client)
    client.post("/upload", data=b"{", content_type="application/json")
    client.post("/upload", data=b"x" * 3000, content_type="application/json")
    client.post("/upload", data=b"x", content_type="application/pdf")
    url = f"/v1/sensors/{suid}/readings"
    body = observations(TS)
    client.post(url, data=body, headers={"Authorization": "OpenSmogHash " + "0" * 64})
    client.post(url, data=body)
    signed = {"Authorization": "OpenSmogHash " + opensmog_hash(body, secret)}
    assert client.post(url, data=body, headers=signed).status_code == 200
    expected = [
        ("legacy.upload", "400", "BadRequest"),
        ("legacy.upload", "413", "PayloadTooLarge"),
        ("legacy.upload", "415", "UnsupportedMediaType"),
        ("sensors.readings", "401", "BadOpenSmogHash"),
        ("sensors.readings", "403", "Forbidden"),
    ]
    for endpoint, status, reason in expected:
        assert delta.of(REJECTED, endpoint=endpoint, status=status, reason=reason) == 1
    assert delta.of(REJECTED, endpoint="sensors.readings", status="200") == 0


def test_a_write_refused_by_a_database_outage_is_counted_as_storage(make_app, tmp_path):
    (tmp_path / "dir").mkdir()
    app = make_app(DB=str(tmp_path / "dir" / "db.sqlite"), SPOOL_MAX_BYTES=0)
    (tmp_path / "dir").rmdir()  # the database file is gone after the start
    client = app.test_client()
    delta = Delta(client)
    assert client.post("/upload", json={"co2": [1]}).status_code == 503
    labels = {"endpoint": "legacy.upload", "status": "503"}
    assert delta.of(REJECTED, reason="StorageUnavailable", **labels) == 1


def test_rate_limited_requests_are_counted(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SENSOR="1 per minute")
    client = client.test_client()
    suid = str(uuid.uuid4())
    delta = Delta(client)
    for ts in (TS, TS + 1, TS + 2):
        client.post(f"/rogue/v1/sensors/{suid}/readings", data=observations(ts))
    limited = "co2logserver_rate_limited_requests_total"
    assert delta.of(limited, endpoint="sensors.rogue_readings") == 2
    assert (
        delta.of(
            REJECTED,
            endpoint="sensors.rogue_readings",
            status="429",
            reason="RateLimitExceeded",
        )
        == 2
    )


def test_outbox_backlog_is_read_at_scrape_time(make_app):
    client = make_app(
        OSEM_UPLOAD=True,
        OSEM_EMAIL="operator@example.org",
        OSEM_PASSWORD="not-used-here",
        OSEM_FORWARDER_THREAD=False,
    ).test_client()
    assert client.post("/upload", json={"box": ["a", "b"], "co2": [1, 2]}).json
    samples = scrape(client)
    assert value(samples, "co2logserver_database_up") == 1
    assert value(samples, "co2logserver_outbox_items", state="pending") == 2
    assert value(samples, "co2logserver_outbox_items", state="parked") == 0
    oldest = "co2logserver_forwarder_oldest_pending_timestamp_seconds"
    assert value(samples, oldest) > 1_700_000_000
    health = client.get("/health").get_json()
    assert health["outbox"]["pending"] == 2
    assert "last_error" not in health["outbox"]


def test_unreachable_database_shows_in_health_and_metrics(make_app, tmp_path):
    (tmp_path / "dir").mkdir()
    app = make_app(DB=str(tmp_path / "dir" / "db.sqlite"), SPOOL_MAX_BYTES=0)
    (tmp_path / "dir").rmdir()  # lost after the start (a missing one stops it)
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json() == {"status": "unavailable", "database": "unreachable"}
    assert health.headers["Retry-After"].isdigit()
    samples = scrape(client)
    assert value(samples, "co2logserver_database_up") == 0


def test_health_when_all_is_well(client):
    reply = client.get("/health")
    assert reply.status_code == 200
    assert reply.get_json()["status"] == "ok"
    assert reply.get_json()["database"] == "ok"
    assert reply.headers["Cache-Control"] == "no-store"


@pytest.mark.slow
def test_counters_are_summed_over_gunicorn_workers(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, every worker's scrape shows all workers' work."""
    from tests.appserver import GunicornServer

    shared = tmp_path / "prometheus"
    shared.mkdir()
    server = GunicornServer(
        tmp_path,
        {"DB": str(tmp_path / "co2.sqlite"), "RATELIMIT_ENABLED": "False"},
        workers=3,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(shared)},
        extra_args=("--access-logfile", "-", "--access-logformat", "pid=%(p)s %(r)s"),
    )
    uploads = 60
    with server:

        def upload(i: int) -> int:
            reply = requests.post(
                server.url + "/upload", json={"co2": [i, i]}, timeout=30
            )
            return reply.status_code

        with ThreadPoolExecutor(12) as pool:
            assert set(pool.map(upload, range(uploads))) == {200}
        scrapes = [
            parse(requests.get(server.url + "/metrics", timeout=30).text)
            for _ in range(6)
        ]
        log = server.log()
    workers = set(re.findall(r"pid=<(\d+)> POST /upload", log))
    assert len(workers) >= 2, log  # the uploads really spread over workers
    for samples in scrapes:
        assert value(samples, "co2logserver_rows_stored_total") == 2 * uploads
        counted = value(
            samples, REQUESTS, endpoint="legacy.upload", method="POST", status="200"
        )
        assert counted == uploads

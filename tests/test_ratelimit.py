"""Rate limits on the ingest routes: per SUID, per client address, shared via Redis."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from limits import parse

from co2logserver import config_default, create_app
from co2logserver.errors import ConfigError
from tests.conftest import observations
from tests.servers import free_port

TS = 1_700_000_000


@pytest.fixture
def limited_app(make_app):
    """Build an app with rate limits on (the shared fixtures turn them off)."""
    return lambda **config: make_app(RATELIMIT_ENABLED=True, **config)


def new_suid() -> str:
    return str(uuid.uuid4())


def post_readings(client, suid: str, ts: int = TS, **kw):
    return client.post(f"/v1/sensors/{suid}/readings", data=observations(ts), **kw)


def assert_rate_limited(reply, key: str) -> None:
    """A 429 in the JSON error shape, naming the key, with a usable Retry-After."""
    assert reply.status_code == 429, reply.data
    assert reply.is_json
    assert set(reply.get_json()) == {"error"}
    assert key in reply.get_json()["error"]
    assert 1 <= int(reply.headers["Retry-After"]) <= 61


def test_sensor_limit_counts_per_suid_whatever_its_case(limited_app, sensors):
    client = limited_app(RATELIMIT_SENSOR="3 per minute").test_client()
    suid = new_suid()
    spellings = [suid, suid.upper(), suid]
    replies = [post_readings(client, s, TS + i) for i, s in enumerate(spellings)]
    assert [r.status_code for r in replies] == [200] * 3
    refused = post_readings(client, suid.upper(), TS + 10)
    assert_rate_limited(refused, "CO2LOGSERVER_RATELIMIT_SENSOR")
    # the same budget covers every sensor route; other sensors have their own
    assert_rate_limited(
        client.post(f"/rogue/v1/sensors/{suid}/readings", data=observations(TS + 11)),
        "CO2LOGSERVER_RATELIMIT_SENSOR",
    )
    assert_rate_limited(client.put(f"/v1/sensors/{suid}", json={}), "SENSOR")
    assert post_readings(client, new_suid()).status_code == 200
    stored = client.get(f"/v1/sensors/{suid}/readings").get_json()["readings"]
    assert {r["timestamp"] for r in stored} == {TS, TS + 1, TS + 2}


def test_address_limit_is_shared_by_all_ingest_routes(limited_app):
    client = limited_app(RATELIMIT_ADDRESS="4 per minute").test_client()
    accepted = [
        client.post("/upload", json={"co2": [1]}),
        post_readings(client, new_suid()),
        client.post(f"/rogue/v1/sensors/{new_suid()}/readings", data=observations(TS)),
        client.put(f"/v1/sensors/{new_suid()}", json={}),
    ]
    assert [r.status_code for r in accepted] == [200] * 4
    assert_rate_limited(
        client.post("/upload", json={"co2": [2]}), "CO2LOGSERVER_RATELIMIT_ADDRESS"
    )
    assert_rate_limited(post_readings(client, new_suid()), "ADDRESS")
    # reading routes are not ingest routes: they stay open
    for path in ("/download?format=json", "/health", "/v1/sensors", "/metrics"):
        assert client.get(path).status_code == 200, path
    rows = client.get("/download?format=json").get_json()
    assert [row["co2"] for row in rows] == [1]  # the refused upload stored nothing


def test_defaults_let_a_sensor_report_every_second(limited_app):
    """120 per minute per sensor: one reading a second fits with room for retries."""
    sensor_limit = parse(config_default.CO2LOGSERVER_RATELIMIT_SENSOR)
    address_limit = parse(config_default.CO2LOGSERVER_RATELIMIT_ADDRESS)
    assert sensor_limit.amount / sensor_limit.get_expiry() >= 1
    assert address_limit.amount >= 10 * sensor_limit.amount  # a gateway of 10 sensors
    client = limited_app().test_client()
    suid = new_suid()
    replies = [post_readings(client, suid, TS + i) for i in range(sensor_limit.amount)]
    assert {r.status_code for r in replies} == {200}
    assert_rate_limited(post_readings(client, suid, TS + 500), "SENSOR")


def test_turned_off_for_benchmarks(make_app):
    client = make_app(
        RATELIMIT_ENABLED=False, RATELIMIT_SENSOR="1 per hour"
    ).test_client()
    suid = new_suid()
    assert {post_readings(client, suid, TS + i).status_code for i in range(5)} == {200}


def test_forwarded_for_is_ignored_without_trusted_proxies(limited_app):
    client = limited_app(RATELIMIT_ADDRESS="2 per minute").test_client()

    def upload(forwarded_for: str):
        return client.post(
            "/upload", json={"a": [1]}, headers={"X-Forwarded-For": forwarded_for}
        )

    assert [upload(a).status_code for a in ("10.0.0.1", "10.0.0.2")] == [200, 200]
    assert_rate_limited(upload("10.0.0.3"), "ADDRESS")


def test_trusted_proxy_gives_each_client_its_own_budget(limited_app):
    app = limited_app(RATELIMIT_ADDRESS="2 per minute", TRUSTED_PROXIES=1)
    client = app.test_client()

    def upload(forwarded_for: str):
        return client.post(
            "/upload", json={"a": [1]}, headers={"X-Forwarded-For": forwarded_for}
        )

    assert [upload("192.0.2.1").status_code for _ in range(2)] == [200, 200]
    assert [upload("192.0.2.2").status_code for _ in range(2)] == [200, 200]
    # a client that forges an entry: the proxy appends the real address last
    assert_rate_limited(upload("192.0.2.99, 192.0.2.1"), "ADDRESS")
    assert_rate_limited(upload("192.0.2.2"), "ADDRESS")


def test_redis_shares_limits_between_hosts(db_path, build_app, redis_url):
    """Two app instances (two hosts or workers) count against one budget."""
    config = {
        "DB": db_path,
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE": redis_url,
        "RATELIMIT_SENSOR": "3 per minute",
    }
    first, second = (build_app(config).test_client() for _ in range(2))
    suid = new_suid()
    statuses = [
        post_readings(client, suid, TS + i).status_code
        for i, client in enumerate([first, second, first, second, first])
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_unreachable_redis_falls_back_to_counting_in_memory(limited_app):
    app = limited_app(
        RATELIMIT_STORAGE=f"redis://127.0.0.1:{free_port()}/0",
        RATELIMIT_SENSOR="2 per minute",
    )
    client = app.test_client()
    suid = new_suid()
    assert [post_readings(client, suid, TS + i).status_code for i in range(2)] == [
        200,
        200,
    ]
    assert_rate_limited(post_readings(client, suid, TS + 2), "SENSOR")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"RATELIMIT_SENSOR": "lots"}, "CO2LOGSERVER_RATELIMIT_SENSOR"),
        ({"RATELIMIT_ADDRESS": "5 per fortnight"}, "CO2LOGSERVER_RATELIMIT_ADDRESS"),
        ({"RATELIMIT_STORAGE": "floppy://a"}, "CO2LOGSERVER_RATELIMIT_STORAGE"),
        ({"TRUSTED_PROXIES": -1}, "CO2LOGSERVER_TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": "two"}, "CO2LOGSERVER_TRUSTED_PROXIES"),
    ],
)
def test_settings_that_cannot_work_stop_the_start(db_path, config, key):
    with pytest.raises(ConfigError, match=key):
        create_app({"DB": db_path, "RATELIMIT_ENABLED": True, **config})


@pytest.mark.slow
def test_redis_limits_hold_across_gunicorn_workers(tmp_path, redis_url):
    """Three workers, one budget: exactly the limit passes, however requests spread."""
    from tests.appserver import GunicornServer

    settings = {
        "DB": str(tmp_path / "co2.sqlite"),
        "RATELIMIT_STORAGE": redis_url,
        "RATELIMIT_SENSOR": "5 per minute",
    }
    suid = new_suid()

    with GunicornServer(tmp_path, settings, workers=3) as server:

        def post(i: int) -> int:
            url = f"{server.url}/rogue/v1/sensors/{suid}/readings"
            return requests.post(url, data=observations(TS + i), timeout=30).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(post, range(18)))
    assert sorted(statuses) == [200] * 5 + [429] * 13

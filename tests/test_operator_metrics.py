"""What an operator needs to see on ``/metrics`` (#12): the MQTT subscriber, silent
sensors and the newest reading's age, database errors by cause, and the forwarder's
timestamp gauges while forwarding is off."""

from __future__ import annotations

import shutil
import time

import pytest

from co2logserver.store import get_store, outage_kind
from tests.conftest import SensorActions, observations
from tests.test_metrics import Delta, scrape, value
from tests.test_mqtt import Setup, readings_body

NOW = int(time.time())


def test_forwarder_timestamps_are_zero_while_forwarding_is_off(client):
    samples = scrape(client)
    for name in ("last_success", "last_error", "oldest_pending"):
        key = (f"co2logserver_forwarder_{name}_timestamp_seconds", frozenset())
        assert samples[key] == 0


def test_silent_sensors_and_the_newest_readings_age(make_app):
    client = make_app(SILENT_AFTER=3600).test_client()
    samples = scrape(client)
    assert value(samples, "co2logserver_sensors", state="silent") == 0
    assert ("co2logserver_newest_reading_age_seconds", frozenset()) not in samples
    api = SensorActions(client)
    now = int(time.time())  # not the import's: the suite runs for many minutes
    api.post_rogue(api.new_suid(), observations(now - 7200))  # silent
    api.post_rogue(api.new_suid(), observations(now - 7300))  # silent
    api.post_rogue(api.new_suid(), observations(now - 60))  # active
    samples = scrape(client)
    assert value(samples, "co2logserver_sensors", state="silent") == 2
    assert value(samples, "co2logserver_sensors", state="active") == 1
    age = value(samples, "co2logserver_newest_reading_age_seconds")
    assert 60 <= age < 600


def test_database_errors_are_counted_by_cause(tmp_path, build_app):
    directory = tmp_path / "data"
    directory.mkdir()
    app = build_app({"DB": str(directory / "co2.sqlite")})
    client = app.test_client()
    assert client.post("/upload", json={"co2": [1]}).status_code == 200
    shutil.rmtree(directory)
    get_store(app).dispose()
    delta = Delta(client)
    assert client.post("/upload", json={"co2": [2]}).status_code == 503
    assert client.get("/download?format=json").status_code == 503
    errors = "co2logserver_database_errors_total"
    # /metrics itself reads the database too: at least the two requests' failures
    assert delta.of(errors, cause="unreachable") >= 2
    assert delta.of(errors, cause="locked") == 0


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("database is locked", "locked"),
        ("unable to open database file", "unreachable"),
        ('connection to server at "127.0.0.1", port 5432 failed', "unreachable"),
        ("disk I/O error", "disk"),
        ("attempt to write a readonly database", "disk"),
        ("canceling statement due to statement timeout", "timeout"),
        ("something else", "other"),
    ],
)
def test_outage_kinds(message, kind):
    assert outage_kind(RuntimeError(message)) == kind


@pytest.fixture
def mq(mosquitto_server, make_app):
    setup = Setup(mosquitto_server, make_app)
    yield setup
    setup.close()


def wait_for(check, timeout: float = 10.0):
    """Poll ``check`` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            return result
        time.sleep(0.05)
    return result


def test_mqtt_subscriber_metrics(mq):
    delta = Delta(mq.http)
    subscriber = mq.subscriber()
    assert wait_for(lambda: value(scrape(mq.http), "co2logserver_mqtt_connected") == 1)
    device = mq.device()
    suid = SensorActions.new_suid()
    device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW - 60))
    device.publish(f"rogue/v1/sensors/{suid}/readings", b"not json")
    device.publish(f"rogue/v1/sensors/{suid}/readings", b'[{"readings": {}}]')
    mq.wait_readings(suid, 2)
    device.next_error()
    device.next_error()
    assert wait_for(lambda: delta.of("co2logserver_mqtt_messages_total") == 3)
    assert delta.of("co2logserver_mqtt_messages_stored_total") == 1
    assert (
        delta.of("co2logserver_mqtt_messages_refused_total", reason="BadRequest") == 2
    )
    mq.stop(subscriber)
    assert wait_for(lambda: value(scrape(mq.http), "co2logserver_mqtt_connected") == 0)


def test_subscriber_metrics_reach_the_web_servers_metrics(mosquitto_server, tmp_path):
    """Processes as deployed: gunicorn and ``python3 -m co2logserver mqtt`` share
    PROMETHEUS_MULTIPROC_DIR; the subscriber also serves --metrics-port."""
    import os
    import subprocess
    import sys

    import requests

    from tests.appserver import GunicornServer
    from tests.servers import free_port
    from tests.test_metrics import parse
    from tests.test_mqtt import Device

    shared = tmp_path / "prometheus"
    shared.mkdir()
    prefix = f"m{NOW}"
    settings = {
        "DB": str(tmp_path / "co2.sqlite"),
        "MQTT_URL": mosquitto_server.url,
        "MQTT_PREFIX": prefix,
        "MQTT_CLIENT_ID": f"sub-{prefix}",
        "RATELIMIT_ENABLED": "False",
    }
    web = GunicornServer(
        tmp_path,
        settings,
        workers=2,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(shared)},
    )
    port = free_port()
    with web:
        env = web.environment()
        subscriber = subprocess.Popen(
            [sys.executable, "-m", "co2logserver", "mqtt", "--metrics-port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines = [subscriber.stdout.readline() for _ in range(2)]
            assert any("subscribed" in line for line in lines), lines
            device = Device(mosquitto_server, prefix)
            suid = SensorActions.new_suid()
            device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
            device.publish(f"rogue/v1/sensors/{suid}/readings", b"[]")
            device.next_error()
            device.close()

            def web_samples():
                return parse(requests.get(web.url + "/metrics", timeout=10).text)

            def both_counted():
                samples = web_samples()
                return (
                    value(samples, "co2logserver_mqtt_messages_total") == 2 and samples
                )

            samples = wait_for(both_counted)
            assert samples, web_samples()
            assert value(samples, "co2logserver_mqtt_connected") == 1
            assert value(samples, "co2logserver_mqtt_messages_stored_total") == 1
            refused = "co2logserver_mqtt_messages_refused_total"
            assert value(samples, refused, reason="BadRequest") == 1
            own = parse(
                requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            )
            assert value(own, "co2logserver_mqtt_messages_total") == 2
        finally:
            subscriber.terminate()
            subscriber.wait(timeout=15)
            subscriber.stdout.close()
    assert os.listdir(shared)

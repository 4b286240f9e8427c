"""MQTT ingestion against a real Mosquitto broker.

Devices are real paho clients (MQTT 3.1.1 as an Arduino with PubSubClient, or MQTT 5);
the subscriber runs in this process or, for the crash tests, as
``python -m co2logserver mqtt`` killed with SIGKILL. What was stored is read back
through the HTTP API.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from co2logserver import replay
from co2logserver.cli import main
from co2logserver.errors import ConfigError
from co2logserver.mqtt import (
    Broker,
    MqttSubscriber,
    Route,
    authorization_of,
    parse_broker_url,
    parse_topic,
    subscription_filters,
)
from co2logserver.store import get_store
from tests.conftest import SensorActions, opensmog_hash
from tests.servers import ForegroundServer, find_binary, free_port, make_tempdir

paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 15.0
NOW = int(time.time())


# --------------------------------------------------------------------------------------
# Topics and URLs (no broker)
# --------------------------------------------------------------------------------------

SUID = "0f2c5b8e-3a41-4d6c-9a0e-7b1d2c3e4f50"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (f"os/v1/sensors/{SUID}/readings", Route("os", SUID, False)),
        (f"os/v1/sensors/{SUID}/readings/ab12", Route("os", SUID, False, "ab12")),
        (f"os/rogue/v1/sensors/{SUID}/readings", Route("os", SUID, True)),
        (f"os/rogue/v1/sensors/{SUID}/readings/x", Route("os", SUID, True, "x")),
        (f"os/v1/sensors/{SUID}/errors", None),
        (f"os/v1/sensors/{SUID}/readings/a/b", None),
        (f"other/v1/sensors/{SUID}/readings", None),
        (f"os/v2/sensors/{SUID}/readings", None),
        ("os", None),
    ],
)
def test_parse_topic(topic, expected):
    assert parse_topic(topic, "os") == expected


def test_errors_topic_mirrors_the_path():
    assert Route("a/b", SUID, False).errors_topic == f"a/b/v1/sensors/{SUID}/errors"
    assert Route("p", SUID, True).errors_topic == f"p/rogue/v1/sensors/{SUID}/errors"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", Broker("broker", 1883, False)),
        ("mqtts://broker", Broker("broker", 8883, True)),
        (
            "mqtt://u%40x:p%3Aw@10.0.0.1:1884",
            Broker("10.0.0.1", 1884, False, "u@x", "p:w"),
        ),
    ],
)
def test_parse_broker_url(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://broker", "broker:1883", "mqtt://", "mqtt://h:99999"]
)
def test_bad_broker_url_names_the_key_without_the_password(url):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_MQTT_URL") as info:
        parse_broker_url(url.replace("://", "://user:secretpw@", 1))
    assert "secretpw" not in str(info.value)


def test_shared_group_prefixes_every_filter():
    filters = subscription_filters("os", "ingest")
    assert len(filters) == 4
    assert all(f.startswith("$share/ingest/os/") for f in filters)
    assert subscription_filters("os")[0] == "os/v1/sensors/+/readings"


def user_properties(*pairs: tuple[str, str]) -> Properties:
    """PUBLISH properties carrying user properties."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = list(pairs)
    return properties


@pytest.mark.parametrize(
    ("route", "properties", "expected"),
    [
        (Route("p", SUID, False, "AB"), None, "OpenSmogHash AB"),
        (
            Route("p", SUID, False, "ts=0,seq=3,hash=AB"),
            None,
            "OpenSmogHash2 ts=0,seq=3,hash=AB",
        ),
        (Route("p", SUID, False), user_properties(("Authorization", "x y")), "x y"),
        (
            Route("p", SUID, False, "topic"),
            user_properties(("authorization", "OpenSmogHash prop")),
            "OpenSmogHash topic",
        ),
        (Route("p", SUID, False), user_properties(("other", "v")), None),
        (Route("p", SUID, False), None, None),
    ],
)
def test_authorization_from_topic_or_user_property(route, properties, expected):
    assert authorization_of(route, properties) == expected


def test_bad_url_on_the_command_line_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main,
        ["-f", str(tmp_path / "db.sqlite"), "mqtt"],
        env={"CO2LOGSERVER_MQTT_URL": "http://user:pw@broker"},
    )
    assert result.exit_code == 1
    assert "CO2LOGSERVER_MQTT_URL" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------------
# Devices and subscribers on a real broker
# --------------------------------------------------------------------------------------


def readings_body(*timestamps: int, **readings: float) -> bytes:
    """A payload of one observation per timestamp."""
    readings = readings or {"PM10": 12.5, "TEMP": 21.0}
    return json.dumps(
        [{"timestamp": ts, "readings": readings} for ts in timestamps]
    ).encode()


class Device:
    """A sensor on the broker: publishes readings and listens to error topics."""

    def __init__(self, broker, prefix: str, protocol=paho.MQTTv311):
        self.prefix = prefix
        self.errors: queue.Queue = queue.Queue()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"device-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}/#", qos=1)
        assert subscribed.wait(TIMEOUT), "no SUBACK from the broker"

    def _on_message(self, _client, _userdata, message) -> None:
        if message.topic.endswith("/errors"):
            self.errors.put(message)

    def publish(self, path: str, payload: bytes, properties=None) -> None:
        """Publish QoS 1 to ``<prefix>/<path>`` and wait for the broker's PUBACK."""
        info = self.client.publish(
            f"{self.prefix}/{path}", payload, qos=1, properties=properties
        )
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def next_error(self):
        """The next message on an errors topic: (topic, body, user properties)."""
        message = self.errors.get(timeout=TIMEOUT)
        props = dict(getattr(message.properties, "UserProperty", None) or [])
        return message.topic, json.loads(message.payload), props

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Setup:
    """One test's prefix, app, devices and in-process subscribers."""

    def __init__(self, broker, make_app):
        self.broker = broker
        self.make_app = make_app
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.client_id = f"sub-{self.prefix}"
        self.app = self.new_app()
        self.http = self.app.test_client()
        self.sensors = SensorActions(self.http)
        self.running: list[MqttSubscriber] = []
        self.devices: list[Device] = []

    def new_app(self, **config):
        """An app on the test's database configured for the test's broker."""
        return self.make_app(
            **{
                "MQTT_URL": self.broker.url,
                "MQTT_PREFIX": self.prefix,
                "MQTT_CLIENT_ID": self.client_id,
                **config,
            }
        )

    def subscriber(self, **config) -> MqttSubscriber:
        """Start a subscriber and wait until the broker confirmed its subscriptions."""
        app = self.new_app(**config) if config else self.app
        subscribed = threading.Event()
        subscriber = MqttSubscriber(
            get_store(app), app.config, on_subscribed=lambda _topics: subscribed.set()
        )
        subscriber.start()
        self.running.append(subscriber)
        assert subscribed.wait(TIMEOUT), "the subscriber did not subscribe"
        return subscriber

    def stop(self, subscriber: MqttSubscriber) -> None:
        subscriber.stop()
        self.running.remove(subscriber)

    def device(self, protocol=paho.MQTTv311) -> Device:
        device = Device(self.broker, self.prefix, protocol)
        self.devices.append(device)
        return device

    def readings(self, suid: str) -> list[dict]:
        """What the HTTP API shows of a sensor's readings."""
        response = self.http.get(f"/v1/sensors/{suid}/readings?limit=100000")
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.json
        return response.json["readings"]

    def wait_readings(
        self, suid: str, count: int, timeout: float = TIMEOUT
    ) -> list[dict]:
        """Poll until ``count`` readings are stored (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(found := self.readings(suid)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} readings stored, not {count}")
            time.sleep(0.02)
        return found

    def close(self) -> None:
        for subscriber in self.running:
            subscriber.stop()
        for device in self.devices:
            device.close()


@pytest.fixture
def mq(mosquitto_server, make_app) -> Iterator[Setup]:
    """A fresh topic prefix on the session's broker, cleaned up after the test."""
    setup = Setup(mosquitto_server, make_app)
    yield setup
    setup.close()


def test_hash_in_topic_stores_verified_readings(mq):
    mq.subscriber()
    suid = SensorActions.new_suid()
    secret = mq.sensors.register(suid)
    body = readings_body(NOW - 60)
    mq.device().publish(
        f"v1/sensors/{suid}/readings/{opensmog_hash(body, secret).upper()}", body
    )
    readings = mq.wait_readings(suid, 2)
    assert {(r["type"], r["value"], r["verified"]) for r in readings} == {
        ("PM10", 12.5, True),
        ("TEMP", 21.0, True),
    }


def test_opensmoghash2_in_topic_stores_once_and_refuses_a_replay(mq):
    mq.subscriber()
    suid = SensorActions.new_suid()
    secret = mq.sensors.register(suid)
    body = json.dumps([{"age": 5, "readings": {"PM10": 3.0}}]).encode()
    level = replay.header(0, 7, body, secret).split(" ", 1)[1]
    device = mq.device()
    device.publish(f"v1/sensors/{suid}/readings/{level}", body)
    assert mq.wait_readings(suid, 1)[0]["verified"] is True
    other = json.dumps([{"age": 1, "readings": {"PM10": 4.0}}]).encode()
    reused = replay.header(0, 7, other, secret).split(" ", 1)[1]
    device.publish(f"v1/sensors/{suid}/readings/{reused}", other)
    device.publish(f"v1/sensors/{suid}/readings/{level}", body)  # an identical retry
    fresh = replay.header(0, 8, other, secret).split(" ", 1)[1]
    device.publish(f"v1/sensors/{suid}/readings/{fresh}", other)
    readings = mq.wait_readings(suid, 2)
    time.sleep(0.5)  # the refused and retried messages came before: nothing more
    assert sorted(r["value"] for r in mq.readings(suid)) == [3.0, 4.0]
    assert len(readings) == 2


def test_mqtt5_user_property_stores_verified_readings(mq):
    mq.subscriber()
    suid = SensorActions.new_suid()
    secret = mq.sensors.register(suid)
    body = readings_body(NOW - 60, CO=0.4)
    header = ("authorization", f"OpenSmogHash {opensmog_hash(body, secret)}")
    device = mq.device(paho.MQTTv5)
    device.publish(f"v1/sensors/{suid}/readings", body, user_properties(header))
    assert mq.wait_readings(suid, 1)[0]["verified"] is True


def test_rogue_and_unregistered_sensors_store_unverified(mq):
    mq.subscriber()
    rogue, unregistered = SensorActions.new_suid(), SensorActions.new_suid()
    device = mq.device()
    device.publish(f"rogue/v1/sensors/{rogue}/readings", readings_body(NOW - 5))
    device.publish(
        f"v1/sensors/{unregistered}/readings/{'0' * 64}", readings_body(NOW - 5)
    )
    for suid in (rogue, unregistered):
        assert [r["verified"] for r in mq.wait_readings(suid, 2)] == [False, False]
    assert device.errors.empty()


def signed_elsewhere(body: bytes, secret: str) -> str:
    """A hash of another body: what a tampered message carries."""
    return opensmog_hash(body + b" ", secret)


REFUSALS = {
    # name: (secure?, path, topic-hash maker or None, body)
    "tampered": (True, "v1", signed_elsewhere, readings_body(NOW - 9)),
    "malformed hash": (True, "v1", lambda _b, _s: "not-hex", readings_body(NOW - 9)),
    "unsigned secure": (True, "v1", None, readings_body(NOW - 9)),
    "secure on rogue path": (True, "rogue/v1", None, readings_body(NOW - 9)),
    "unknown type": (False, "v1", None, readings_body(NOW - 9, XYZ=1.0)),
    "not an array": (False, "rogue/v1", None, b'{"timestamp": 1}'),
    "not json": (False, "v1", None, b"\xff\xfe"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusal_is_the_http_error_on_the_errors_topic(mq, case):
    secure, path, make_hash, body = REFUSALS[case]
    mq.subscriber()
    suid = SensorActions.new_suid()
    secret = mq.sensors.register(suid) if secure else None
    topic_hash = make_hash(body, secret) if make_hash else None
    headers = {"Authorization": f"OpenSmogHash {topic_hash}"} if topic_hash else {}
    http = mq.http.post(f"/{path}/sensors/{suid}/readings", data=body, headers=headers)
    assert http.status_code in (400, 401, 403)

    suffix = f"/{topic_hash}" if topic_hash else ""
    device = mq.device(paho.MQTTv5)  # MQTT 5 for the status user property
    device.publish(f"{path}/sensors/{suid}/readings{suffix}", body)
    topic, error, props = device.next_error()

    assert topic == f"{mq.prefix}/{path}/sensors/{suid}/errors"
    assert error == http.json
    assert props["status"] == str(http.status_code)
    assert mq.readings(suid) == []


def test_mqtt311_device_gets_refusals_too(mq):
    mq.subscriber()
    device = mq.device(paho.MQTTv311)
    device.publish("v1/sensors/not-a-uuid/readings", readings_body(NOW))
    topic, error, _props = device.next_error()
    http = mq.http.post("/v1/sensors/not-a-uuid/readings", data=readings_body(NOW))
    assert topic == f"{mq.prefix}/v1/sensors/not-a-uuid/errors"
    assert error == http.json


def test_payload_over_the_size_limit_is_413(mq):
    mq.subscriber(MAX_CONTENT_LENGTH=300)
    suid = SensorActions.new_suid()
    device = mq.device(paho.MQTTv5)
    correlation = user_properties()
    correlation.CorrelationData = b"req-7"
    device.publish(
        f"rogue/v1/sensors/{suid}/readings",
        readings_body(*range(NOW - 10, NOW)),
        correlation,
    )
    message = device.errors.get(timeout=TIMEOUT)
    assert set(json.loads(message.payload)) == {"error"}
    assert dict(message.properties.UserProperty)["status"] == "413"
    assert message.properties.CorrelationData == b"req-7"
    device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
    assert len(mq.wait_readings(suid, 2)) == 2


def test_rate_limited_message_is_dropped_with_429(mq):
    mq.subscriber(RATELIMIT_ENABLED=True, RATELIMIT_SENSOR="2 per minute")
    suid = SensorActions.new_suid()
    device = mq.device(paho.MQTTv5)
    for ts in (NOW - 3, NOW - 2, NOW - 1):
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts))
    topic, error, props = device.next_error()
    assert props["status"] == "429"
    assert 1 <= int(props["retry-after"]) <= 60
    assert "2 per 1 minute" in error["error"]
    # The worker handles messages in order: the third was refused after the first
    # two were stored, and nothing of it was.
    assert sorted({r["timestamp"] for r in mq.readings(suid)}) == [NOW - 3, NOW - 2]


def test_redis_shares_the_rate_limit_between_subscribers(mq, redis_url):
    limit = {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_SENSOR": "2 per minute",
        "RATELIMIT_STORAGE": redis_url,
        "MQTT_SHARED_GROUP": "ingest",
    }
    subscribers = [
        mq.subscriber(**limit, MQTT_CLIENT_ID=f"{mq.prefix}-{n}") for n in (1, 2)
    ]
    suid = SensorActions.new_suid()
    device = mq.device()
    for ts in range(NOW - 4, NOW):
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts))
    for _ in range(2):
        device.next_error()

    def counts() -> Counter:
        return sum((s.counts for s in subscribers), Counter())

    wait_until(lambda: counts().total() == 4, "all messages counted")
    assert counts() == {"stored": 2, "refused": 2}
    assert all(s.counts["stored"] + s.counts["refused"] for s in subscribers)


@pytest.fixture
def locked_db(db_path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock, as a long write by another process would."""
    connection = sqlite3.connect(db_path, isolation_level=None, timeout=TIMEOUT)
    connection.execute("BEGIN IMMEDIATE")
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


def wait_until(predicate, what: str) -> None:
    """Poll ``predicate`` until true or TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_storage_unavailable_waits_and_stores_when_back(mq, db_path):
    get_store(mq.app).ensure_schema()
    subscriber = mq.subscriber(SQLITE_BUSY_TIMEOUT=0.05, MQTT_MAX_BACKOFF=1)
    suid = SensorActions.new_suid()
    device = mq.device()
    connection = sqlite3.connect(db_path, isolation_level=None, timeout=TIMEOUT)
    try:
        connection.execute("BEGIN IMMEDIATE")
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
        wait_until(lambda: subscriber.counts["retried"] >= 1, "a retry")
        connection.execute("ROLLBACK")
    finally:
        connection.close()
    assert len(mq.wait_readings(suid, 2)) == 2
    wait_until(lambda: subscriber.counts["stored"] == 1, "the count")
    assert device.errors.empty()


def test_unacknowledged_message_is_redelivered_to_the_next_subscriber(mq, locked_db):
    first = mq.subscriber(SQLITE_BUSY_TIMEOUT=0.05)
    suid = SensorActions.new_suid()
    device = mq.device()
    device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
    wait_until(lambda: first.counts["retried"] >= 1, "a retry")
    mq.stop(first)  # gives up on the message without acknowledging it
    locked_db.execute("ROLLBACK")

    second = mq.subscriber()  # same client id: the broker's session continues
    assert len(mq.wait_readings(suid, 2)) == 2
    wait_until(lambda: second.counts["stored"] == 1, "the count")
    assert first.counts["stored"] == 0
    assert device.errors.empty()


def test_messages_published_while_stopped_are_stored_after_restart(mq):
    mq.stop(mq.subscriber())
    suid = SensorActions.new_suid()
    device = mq.device()
    for ts in range(NOW - 5, NOW):
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts, HUM=50))
    mq.subscriber()
    assert [r["timestamp"] for r in mq.wait_readings(suid, 5)] == list(
        range(NOW - 5, NOW)
    )


def test_shared_subscription_splits_the_load(mq):
    subscribers = [
        mq.subscriber(MQTT_SHARED_GROUP="ingest", MQTT_CLIENT_ID=f"{mq.prefix}-{n}")
        for n in (1, 2)
    ]
    suid = SensorActions.new_suid()
    device = mq.device()
    for ts in range(NOW - 20, NOW):
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts, O3=1))
    assert len(mq.wait_readings(suid, 20)) == 20
    wait_until(
        lambda: sum(s.counts["stored"] for s in subscribers) == 20, "all messages"
    )
    assert all(s.counts["stored"] > 0 for s in subscribers)


def test_subscriber_reconnects_after_a_broker_restart(mq):
    subscriber = mq.subscriber(MQTT_MAX_BACKOFF=1)
    mq.broker.stop()
    mq.broker.start()
    suid = SensorActions.new_suid()
    mq.device().publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
    assert len(mq.wait_readings(suid, 2)) == 2
    wait_until(lambda: subscriber.counts["stored"] == 1, "the count")


def test_unexpected_failure_is_tried_again_then_refused_with_500(mq, monkeypatch):
    from co2logserver import ingest

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "submit_readings", broken)
    subscriber = mq.subscriber()
    device = mq.device(paho.MQTTv5)
    suid = SensorActions.new_suid()
    device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(NOW))
    topic, error, props = device.next_error()
    assert props["status"] == "500"
    assert set(error) == {"error"}
    wait_until(lambda: subscriber.counts["refused"] == 1, "the count")
    assert subscriber.counts == {"retried": 2, "refused": 1}


# --------------------------------------------------------------------------------------
# The subscriber process killed in the middle of a stream
# --------------------------------------------------------------------------------------


class SubscriberProcess:
    """``python -m co2logserver -f DB mqtt`` as a child process."""

    def __init__(self, db_path: str, env: dict[str, str], workdir: Path):
        self.db_path = db_path
        self.env = env
        self.output = workdir / "subscriber.out"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it reports its subscriptions."""
        start = self.output.stat().st_size if self.output.exists() else 0
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "co2logserver", "-f", self.db_path, "mqtt"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: (
                b"subscribed to" in self.output.read_bytes()[start:]
                or self.proc.poll() is not None
            ),
            "the subscriber to subscribe",
        )
        assert self.proc.poll() is None, self.output.read_text()

    def kill(self, sig: int) -> int | None:
        """Send ``sig``, reap the process and return its exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            code = self.proc.wait(TIMEOUT)
        self.proc = None
        return code


def count_readings(db_path: str) -> int:
    """Readings stored so far, counted straight in the SQLite file."""
    connection = sqlite3.connect(db_path, timeout=TIMEOUT)
    try:
        return connection.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.OperationalError:  # the subscriber has not created it yet
        return 0
    finally:
        connection.close()


@pytest.fixture
def subscriber_process(mq, db_path, tmp_path) -> Iterator[SubscriberProcess]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")},
        "CO2LOGSERVER_MQTT_URL": mq.broker.url,
        "CO2LOGSERVER_MQTT_PREFIX": mq.prefix,
        "CO2LOGSERVER_MQTT_CLIENT_ID": f"proc-{mq.prefix}",
        "CO2LOGSERVER_RATELIMIT_ENABLED": "False",
    }
    process = SubscriberProcess(db_path, env, tmp_path)
    yield process
    process.kill(signal.SIGKILL)


def test_sigkill_mid_stream_loses_nothing_and_stores_once(mq, subscriber_process):
    """Kill -9 while a QoS 1 stream is being stored; restart; all stored once."""
    first, second = 300, 100
    suid = SensorActions.new_suid()
    device = mq.device()
    subscriber_process.start()
    timestamps = list(range(NOW - first - second, NOW))
    for ts in timestamps[:first]:
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts, TEMP=ts))

    db = subscriber_process.db_path
    wait_until(lambda: count_readings(db) >= 20, "20 readings")
    subscriber_process.kill(signal.SIGKILL)
    at_kill = count_readings(db)
    assert 0 < at_kill < first, "the kill did not land in the middle of the stream"

    for ts in timestamps[first:]:  # published while the subscriber is down
        device.publish(f"rogue/v1/sensors/{suid}/readings", readings_body(ts, TEMP=ts))
    subscriber_process.start()
    stored = mq.wait_readings(suid, first + second, timeout=60)
    assert subscriber_process.kill(signal.SIGTERM) == 0  # a clean stop

    assert [r["timestamp"] for r in stored] == timestamps
    assert all(r["value"] == r["timestamp"] for r in stored)
    sensor = mq.http.get(f"/v1/sensors/{suid}").json
    assert sensor["reading_count"] == first + second
    assert device.errors.empty()


# --------------------------------------------------------------------------------------
# TLS, broker accounts and per-device ACLs (the configuration docs/mqtt.rst shows)
# --------------------------------------------------------------------------------------

SUBSCRIBER_PASSWORD = "subscriber-pw"
DEVICE_SUID = "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b"
DEVICE_PASSWORD = "device-pw"

ACL = """\
# The subscriber reads readings and answers on errors topics.
user co2logserver
topic read opensmog/v1/sensors/+/readings/#
topic read opensmog/rogue/v1/sensors/+/readings/#
topic write opensmog/v1/sensors/+/errors
topic write opensmog/rogue/v1/sensors/+/errors

# Every device logs in with its SUID as user name; it may publish only its own
# readings and hear only its own errors.
pattern write opensmog/v1/sensors/%u/readings/#
pattern read opensmog/v1/sensors/%u/errors
pattern write opensmog/rogue/v1/sensors/%u/readings
pattern read opensmog/rogue/v1/sensors/%u/errors
"""


def run_tool(*argv: str, cwd: Path) -> None:
    """Run openssl or mosquitto_passwd, failing the test with its output."""
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"


def make_certificates(workdir: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    openssl = find_binary("openssl", "openssl")
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes".split()
    days = ["-days", "2"]
    ca = ["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA"]
    run_tool(openssl, "req", "-x509", *key, *ca, *days, cwd=workdir)
    csr = ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]
    run_tool(openssl, "req", *key, *csr, cwd=workdir)
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
    out = ["-CAcreateserial", "-out", "server.crt", "-extfile", "san.ext"]
    run_tool(openssl, "x509", "-req", *sign, *out, *days, cwd=workdir)


def write_tls_broker_config(workdir: Path, port: int) -> Path:
    """Mosquitto with TLS, password accounts and the ACL above."""
    passwd = find_binary("mosquitto_passwd", "mosquitto")
    accounts = [("co2logserver", SUBSCRIBER_PASSWORD), (DEVICE_SUID, DEVICE_PASSWORD)]
    (workdir / "passwd").touch()
    for user, password in accounts:
        run_tool(passwd, "-b", "passwd", user, password, cwd=workdir)
    (workdir / "acl").write_text(ACL)
    lines = [
        *(["user root"] if os.geteuid() == 0 else []),
        f"listener {port} 127.0.0.1",
        f"cafile {workdir / 'ca.crt'}",
        f"certfile {workdir / 'server.crt'}",
        f"keyfile {workdir / 'server.key'}",
        "allow_anonymous false",
        f"password_file {workdir / 'passwd'}",
        f"acl_file {workdir / 'acl'}",
        "persistence false",
        # PubSubClient publishes at QoS 0; deliver at the subscription's QoS 1, so
        # such readings are queued while the subscriber is away.
        "upgrade_outgoing_qos true",
        "max_queued_messages 100000",
        "max_packet_size 1100000",
        f"log_dest file {workdir / 'mosquitto.log'}",
    ]
    config = workdir / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture(scope="module")
def tls_broker():
    """A private Mosquitto with TLS, accounts and per-device ACLs."""
    workdir = make_tempdir("mosquitto-tls")
    try:
        make_certificates(workdir)
        port = free_port()
        config = write_tls_broker_config(workdir, port)
        binary = find_binary("mosquitto", "mosquitto")
        server = ForegroundServer(
            "mosquitto", [binary, "-c", str(config)], port, workdir
        )
        server.log_path = workdir / "mosquitto.log"
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def tls_subscriber(tls_broker, make_app, client_id: str, **config):
    """An app and a started subscriber logged in to the TLS broker."""
    app = make_app(
        MQTT_URL=f"mqtts://co2logserver:{SUBSCRIBER_PASSWORD}@127.0.0.1:{tls_broker.port}",
        MQTT_TLS_CA_CERTS=str(tls_broker.workdir / "ca.crt"),
        MQTT_CLIENT_ID=client_id,
        **config,
    )
    subscribed = threading.Event()
    subscriber = MqttSubscriber(
        get_store(app), app.config, on_subscribed=lambda _t: subscribed.set()
    )
    subscriber.start()
    if not subscribed.wait(TIMEOUT):
        subscriber.stop()
        raise AssertionError("the subscriber did not subscribe over TLS")
    return app, subscriber


def tls_device(broker, ca: Path) -> tuple[paho.Client, queue.Queue]:
    """A device logged in as its SUID over TLS, listening to its errors topic."""
    errors: queue.Queue = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{DEVICE_SUID}")
    client.username_pw_set(DEVICE_SUID, DEVICE_PASSWORD)
    client.tls_set(ca_certs=str(ca))
    client.on_message = lambda _c, _u, message: errors.put(message)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(f"opensmog/v1/sensors/{DEVICE_SUID}/errors", qos=1)
    assert subscribed.wait(TIMEOUT)
    return client, errors


def test_tls_accounts_and_per_device_acl(tls_broker, make_app):
    app, subscriber = tls_subscriber(
        tls_broker, make_app, f"sub-{uuid.uuid4()}", MQTT_SHARED_GROUP="ingest"
    )
    http = app.test_client()
    secret = SensorActions(http).register(DEVICE_SUID)
    other = SensorActions.new_suid()
    client, errors = tls_device(tls_broker, tls_broker.workdir / "ca.crt")
    try:
        body = readings_body(NOW - 30)
        for topic in (
            f"opensmog/v1/sensors/{other}/readings",  # not its own: the ACL drops it
            f"opensmog/v1/sensors/{DEVICE_SUID}/readings/{'0' * 64}",  # tampered
            f"opensmog/v1/sensors/{DEVICE_SUID}/readings/"
            + opensmog_hash(body, secret),
        ):
            client.publish(topic, body, qos=1).wait_for_publish(TIMEOUT)
        refusal = errors.get(timeout=TIMEOUT)
        assert refusal.topic == f"opensmog/v1/sensors/{DEVICE_SUID}/errors"
        assert "OpenSmogHash does not match" in json.loads(refusal.payload)["error"]
        wait_until(lambda: subscriber.counts["stored"] == 1, "the signed message")
        readings = http.get(f"/v1/sensors/{DEVICE_SUID}/readings").json["readings"]
        assert {r["verified"] for r in readings} == {True}
        # Messages from one client arrive in order, so the dropped one would have
        # been handled before the signed one.
        assert subscriber.counts == {"stored": 1, "refused": 1}
        assert http.get(f"/v1/sensors/{other}").status_code == 404
    finally:
        client.disconnect()
        client.loop_stop()
        subscriber.stop()


def test_qos0_readings_are_queued_while_the_subscriber_is_away(tls_broker, make_app):
    """With ``upgrade_outgoing_qos``, what PubSubClient sends at QoS 0 waits too."""
    client_id = f"sub-{uuid.uuid4()}"
    _app, subscriber = tls_subscriber(tls_broker, make_app, client_id)
    subscriber.stop()
    client, _errors = tls_device(tls_broker, tls_broker.workdir / "ca.crt")
    try:
        for ts in (NOW - 2, NOW - 1):
            info = client.publish(
                f"opensmog/v1/sensors/{DEVICE_SUID}/readings", readings_body(ts), qos=0
            )
            info.wait_for_publish(TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()
    app, subscriber = tls_subscriber(tls_broker, make_app, client_id)
    try:
        wait_until(lambda: subscriber.counts["stored"] == 2, "the queued readings")
    finally:
        subscriber.stop()
    readings = app.test_client().get(f"/v1/sensors/{DEVICE_SUID}/readings").json
    assert {r["timestamp"] for r in readings["readings"]} == {NOW - 2, NOW - 1}


def test_refusals_are_kept_for_the_owners_page(mq):
    """SPEC §12: the owner sees an MQTT refusal as an HTTP one (no header kept)."""
    mq.subscriber()
    suid = SensorActions.new_suid()
    secret = mq.sensors.register(suid)
    body = readings_body(NOW - 9)
    device = mq.device()
    device.publish(f"v1/sensors/{suid}/readings/{signed_elsewhere(body, secret)}", body)
    _topic, error, _props = device.next_error()
    with get_store(mq.app).reading() as conn:
        rows = conn.exec_driver_sql(
            "SELECT suid, status, protocol, message, excerpt FROM rejected_requests"
        ).all()
    assert [tuple(r) for r in rows] == [
        (suid, 401, "MQTT readings", error["error"], body.decode()[:120])
    ]

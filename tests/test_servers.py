"""Prove that the server fixtures of ``tests/servers.py`` really work."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
import redis
import sqlalchemy
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.servers import MosquittoServer, PostgresServer, free_port

TIMEOUT = 10.0

# Names of the databases seen by the two pg_database_url tests, in run order.
_seen_databases: list[str] = []


def _scalar(url: str, sql: str, **params: object) -> object:
    """Run ``sql`` on a fresh connection to ``url`` and return the scalar."""
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(sql), params).scalar()
    finally:
        engine.dispose()


def test_free_port_is_bindable() -> None:
    """free_port() returns a usable port number."""
    port = free_port()
    assert 1024 <= port <= 65535


def test_postgres_url_select_one(postgres_url: str) -> None:
    """The shared PostgreSQL server answers SELECT 1."""
    assert postgres_url.startswith("postgresql+psycopg://")
    assert _scalar(postgres_url, "SELECT 1") == 1


@pytest.mark.parametrize("run", [1, 2])
def test_pg_database_url_fresh_per_test(pg_database_url: str, run: int) -> None:
    """Each test gets its own new, empty database; the previous one is dropped."""
    name = make_url(pg_database_url).database
    assert name is not None
    assert name.startswith("test_")
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert _scalar(pg_database_url, tables) == 0
    engine = sqlalchemy.create_engine(pg_database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE marker (id integer)"))
    engine.dispose()
    if run == 2:
        assert _seen_databases, "run 1 must have recorded its database"
        previous = _seen_databases[-1]
        assert previous != name
        exists = "SELECT count(*) FROM pg_database WHERE datname = :name"
        assert _scalar(pg_database_url, exists, name=previous) == 0
    _seen_databases.append(name)


def test_postgres_server_stop_and_start(postgres_server: PostgresServer) -> None:
    """Connections fail while the server is stopped and work after a restart."""
    port = postgres_server.port
    assert _scalar(postgres_server.url, "SELECT 1") == 1
    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(sqlalchemy.exc.OperationalError):
        _scalar(postgres_server.url, "SELECT 1")
    postgres_server.start()
    assert postgres_server.port == port
    assert _scalar(postgres_server.url, "SELECT 1") == 1


def test_postgres_server_restarted_for_next_test(
    postgres_server: PostgresServer,
) -> None:
    """The fixture restarts a server that a previous test left stopped."""
    postgres_server.stop()
    assert not postgres_server.running


def test_postgres_server_running_again(postgres_server: PostgresServer) -> None:
    """After the previous test stopped it, the server is up again."""
    assert _scalar(postgres_server.url, "SELECT 1") == 1


def test_redis_set_get(redis_url: str) -> None:
    """The private Redis stores and returns a value."""
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"test:{uuid.uuid4().hex}"
        assert client.set(key, b"hello")
        assert client.get(key) == b"hello"
    finally:
        client.close()


class _Subscriber:
    """A paho-mqtt 2 client that records received payloads."""

    def __init__(self, client_id: str = "", clean_session: bool = True) -> None:
        """Create the client; call :meth:`connect` to use it."""
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
        )
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.received = threading.Event()
        self.payloads: list[bytes] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Signal a successful connection."""
        if not reason_code.is_failure:
            self.connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """Signal an acknowledged subscription."""
        self.subscribed.set()

    def _on_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        """Record a received message."""
        self.payloads.append(message.payload)
        self.received.set()

    def connect(self, server: MosquittoServer) -> None:
        """Connect to ``server`` and start the network loop thread."""
        self.client.connect(server.host, server.port)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        """Subscribe to ``topic`` with QoS 1 and wait for the SUBACK."""
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT), "no SUBACK"

    def close(self) -> None:
        """Disconnect and stop the network loop thread."""
        self.client.disconnect()
        self.client.loop_stop()


def _publish(server: MosquittoServer, topic: str, payload: bytes) -> None:
    """Publish one QoS 1 message and wait until the broker acknowledged it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_round_trip(mosquitto_server: MosquittoServer) -> None:
    """A published message reaches a subscriber."""
    assert mosquitto_server.url == f"mqtt://127.0.0.1:{mosquitto_server.port}"
    topic = f"test/{uuid.uuid4().hex}"
    subscriber = _Subscriber()
    subscriber.connect(mosquitto_server)
    try:
        subscriber.subscribe(topic)
        _publish(mosquitto_server, topic, b"co2=415")
        assert subscriber.received.wait(TIMEOUT), "message not delivered"
        assert subscriber.payloads == [b"co2=415"]
    finally:
        subscriber.close()


def test_mosquitto_persists_queued_messages(mosquitto_server: MosquittoServer) -> None:
    """QoS 1 messages queued for a persistent session survive a broker restart."""
    topic = f"test/{uuid.uuid4().hex}"
    client_id = f"persistent-{uuid.uuid4().hex[:8]}"
    first = _Subscriber(client_id, clean_session=False)
    first.connect(mosquitto_server)
    first.subscribe(topic)
    first.close()

    _publish(mosquitto_server, topic, b"queued")
    mosquitto_server.stop()
    mosquitto_server.start()

    second = _Subscriber(client_id, clean_session=False)
    second.connect(mosquitto_server)
    try:
        assert second.received.wait(TIMEOUT), "queued message lost on restart"
        assert second.payloads == [b"queued"]
    finally:
        second.close()

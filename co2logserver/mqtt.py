"""MQTT ingestion: readings published to a broker take the same path as ``/v1``.

A sensor publishes the JSON observation array of the OpenSmog API to
``<prefix>/v1/sensors/<SUID>/readings`` (verified path: the OpenSmogHash as one more
topic level, or as the MQTT 5 user property ``authorization``) or to
``<prefix>/rogue/v1/sensors/<SUID>/readings``. Every message goes through
:func:`co2logserver.ingest.submit_readings`, so validation, verification, safe retries
and storage are those of HTTP. A refused message is answered on
``.../sensors/<SUID>/errors`` with the JSON error body HTTP would give.

Nothing is lost: the subscription is QoS 1 on a persistent session, and a message is
acknowledged to the broker only after its transaction has committed. While the
database is unavailable the message waits unacknowledged and is tried again; should
the subscriber die meanwhile, the broker delivers it again after the reconnect, and
the safe-retry rule absorbs whatever arrives twice. No Flask here.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from limits import parse as parse_rate
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from co2logserver import ingest, metrics, rejected
from co2logserver.errors import (
    ApiError,
    ConfigError,
    PayloadTooLarge,
    StorageUnavailable,
    error_body,
)
from co2logserver.store import Store

try:
    from paho.mqtt import client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # the "mqtt" extra is not installed; MqttSubscriber says so
    paho = None  # type: ignore[assignment]  # checked before every use

log = logging.getLogger(__name__)

#: QoS 1 messages the broker may have in flight to the subscriber (MQTT 5 Receive
#: Maximum); the rest wait in the broker's persistent queue, not in our memory.
RECEIVE_MAXIMUM = 64
#: Tries of a message that fails for an unexpected reason (a bug, or a race lost to
#: another subscriber) before it is refused with a 500 and acknowledged.
UNEXPECTED_ATTEMPTS = 3
#: Seconds ``stop()`` waits for the message in hand to be stored.
STOP_TIMEOUT = 30.0
#: Namespace of the per-SUID counters in the rate-limit storage.
RATE_NAMESPACE = "mqtt-sensor"
SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}


class RateLimited(ApiError):
    """Too many messages from one sensor (HTTP would answer 429)."""

    status = 429


class InternalError(ApiError):
    """Storing failed for an unexpected reason, again and again (HTTP: 500)."""

    status = 500


# --------------------------------------------------------------------------------------
# Configuration and topics
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> Broker:
    """Read ``mqtt://user:password@host:1883`` (``mqtts://`` for TLS).

    :raise ConfigError: naming ``CO2LOGSERVER_MQTT_URL`` (never echoing a password).
    """
    parts = urlsplit(str(url))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in SCHEMES or not parts.hostname or port == -1:
        raise ConfigError(
            "CO2LOGSERVER_MQTT_URL must look like mqtt://user:password@host:1883 or "
            "mqtts://host:8883"
        )
    default_port, tls = SCHEMES[parts.scheme]
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Broker(parts.hostname, port or default_port, tls, username, password)


def topic_prefix(settings: Mapping[str, Any]) -> str:
    """``CO2LOGSERVER_MQTT_PREFIX`` without outer slashes.

    :raise ConfigError: for an empty prefix or one with wildcards.
    """
    prefix = str(settings["CO2LOGSERVER_MQTT_PREFIX"]).strip("/")
    if not prefix or "+" in prefix or "#" in prefix:
        raise ConfigError(
            "CO2LOGSERVER_MQTT_PREFIX must be a topic like opensmog, without + or #"
        )
    return prefix


@dataclass(frozen=True)
class Route:
    """What a readings topic says: the sensor, the path and the topic hash."""

    prefix: str
    suid: str
    rogue: bool
    topic_hash: str | None = None

    @property
    def errors_topic(self) -> str:
        """Where refusals of this sensor's messages are published."""
        path = "rogue/v1" if self.rogue else "v1"
        return f"{self.prefix}/{path}/sensors/{self.suid}/errors"


def parse_topic(topic: str, prefix: str) -> Route | None:
    """The route of ``<prefix>/[rogue/]v1/sensors/<SUID>/readings[/<hash>]``.

    Returns ``None`` for any other topic.
    """
    if not topic.startswith(prefix + "/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    rogue = levels[0] == "rogue"
    if rogue:
        levels = levels[1:]
    if len(levels) not in (4, 5) or levels[:2] != ["v1", "sensors"]:
        return None
    if levels[3] != "readings":
        return None
    topic_hash = levels[4] if len(levels) == 5 else None
    return Route(prefix, levels[2], rogue, topic_hash)


def subscription_filters(prefix: str, group: str = "") -> list[str]:
    """The topic filters of both paths, with and without the hash level."""
    share = f"$share/{group}/" if group else ""
    return [
        f"{share}{prefix}/{path}/sensors/+/readings{tail}"
        for path in ("v1", "rogue/v1")
        for tail in ("", "/+")
    ]


def authorization_of(route: Route, properties: Any) -> str | None:
    """The ``Authorization`` value HTTP would have seen, or ``None``.

    The topic level wins (MQTT 3.1.1 devices have no other place for it): a hex
    OpenSmogHash, or ``ts=…,seq=…,hash=…`` for OpenSmogHash2; else the
    MQTT 5 user property ``authorization``, its name compared case-insensitively
    as an HTTP header name is.
    """
    if route.topic_hash is not None:
        scheme = (
            "OpenSmogHash2" if route.topic_hash.startswith("ts=") else "OpenSmogHash"
        )
        return f"{scheme} {route.topic_hash}"
    for name, value in getattr(properties, "UserProperty", None) or ():
        if name.lower() == "authorization":
            return value
    return None


# --------------------------------------------------------------------------------------
# One message -> one ingest call
# --------------------------------------------------------------------------------------


class SensorRateLimit:
    """``CO2LOGSERVER_RATELIMIT_SENSOR`` per SUID, counted in the limits storage.

    Counted with the ``limits`` library (what Flask-Limiter uses), in fixed windows
    as HTTP's limit, in ``CO2LOGSERVER_RATELIMIT_STORAGE``: a ``redis://`` URI shares
    the counters among subscriber processes (under their own names, apart from
    HTTP's). When that storage cannot be reached, messages pass, as HTTP requests
    do: a refused message would be dropped for good, a passed one costs a write.
    """

    def __init__(self, settings: Mapping[str, Any]):
        self.enabled = bool(settings["CO2LOGSERVER_RATELIMIT_ENABLED"])
        if not self.enabled:
            return
        try:
            self.item = parse_rate(settings["CO2LOGSERVER_RATELIMIT_SENSOR"])
            storage = storage_from_string(settings["CO2LOGSERVER_RATELIMIT_STORAGE"])
        except Exception as error:
            raise ConfigError(
                f"CO2LOGSERVER_RATELIMIT_SENSOR or _RATELIMIT_STORAGE: {error}"
            ) from None
        self.limiter = FixedWindowRateLimiter(storage)

    def check(self, suid: str) -> None:
        """Count one message of ``suid``.

        :raise RateLimited: 429 with ``Retry-After`` when over the limit.
        """
        if not self.enabled:
            return
        key = suid.lower()
        try:
            if self.limiter.hit(self.item, RATE_NAMESPACE, key):
                return
            stats = self.limiter.get_window_stats(self.item, RATE_NAMESPACE, key)
        except Exception:
            log.warning("rate-limit storage unavailable; message passed", exc_info=True)
            return
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        # The words of HTTP's 429 (co2logserver.limits), so a sensor reads one text.
        raise RateLimited(
            f"Too many requests: at most {self.item} for this sensor "
            f"(CO2LOGSERVER_RATELIMIT_SENSOR); retry after {retry} s",
            headers={"Retry-After": str(retry)},
        )


@dataclass(frozen=True)
class Refusal:
    """An error published on the sensor's errors topic instead of storing."""

    topic: str
    error: ApiError


def check_size(payload: bytes, limit: int) -> None:
    """:raise PayloadTooLarge: 413 for a payload over ``MAX_CONTENT_LENGTH``."""
    if len(payload) > limit:
        raise PayloadTooLarge(
            f"The message has {len(payload)} bytes, at most {limit} are accepted; "
            "send fewer observations per message"
        )


class ReadingsHandler:
    """Turns one MQTT message into one ingest call; knows nothing of paho."""

    def __init__(self, store: Store, settings: Mapping[str, Any]):
        self.store = store
        self.settings = settings
        self.prefix = topic_prefix(settings)
        self.rate_limit = SensorRateLimit(settings)

    def handle(
        self, topic: str, payload: bytes, properties: Any = None
    ) -> Refusal | None:
        """Store one message, or return why it is refused (nothing of it stored).

        :raise StorageUnavailable: when the database is down; the message must wait
            unacknowledged.
        """
        route = parse_topic(topic, self.prefix)
        if route is None:
            log.warning("ignored a message on %s: not a readings topic", topic)
            return None
        try:
            check_size(payload, self.settings["CO2LOGSERVER_MAX_CONTENT_LENGTH"])
            self.rate_limit.check(route.suid)
            ingest.submit_readings(
                self.store,
                self.settings,
                route.suid,
                payload,
                authorization_of(route, properties),
                rogue_route=route.rogue,
                raw_body=payload,
            )
        except StorageUnavailable:
            raise
        except ApiError as error:
            protocol = "MQTT rogue readings" if route.rogue else "MQTT readings"
            rejected.note(
                self.store, route.suid, error.status, protocol, error.message, payload
            )
            return Refusal(route.errors_topic, error)
        return None

    def internal_error(self, topic: str) -> Refusal | None:
        """The refusal of a message that failed unexpectedly again and again."""
        route = parse_topic(topic, self.prefix)
        if route is None:
            return None
        return Refusal(
            route.errors_topic,
            InternalError(
                "The server could not store this message and dropped it; the "
                "operator has been told (see the server log)"
            ),
        )


def error_properties(error: ApiError, request: Any) -> Properties:
    """MQTT 5 properties of an error message.

    The status and ``Retry-After`` travel as user properties (MQTT has no status
    line); the request's correlation data is echoed so a client can match them.
    """
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.UserProperty = [("status", str(error.status))] + [
        (name.lower(), value) for name, value in error.headers.items()
    ]
    correlation = getattr(request, "CorrelationData", None)
    if correlation is not None:
        properties.CorrelationData = correlation
    return properties


# --------------------------------------------------------------------------------------
# The subscriber
# --------------------------------------------------------------------------------------

RETRY = object()


class MqttSubscriber:
    """Subscribes to the readings topics; stores each message, then acknowledges it.

    ``start()`` connects in the background (retrying while the broker is away) and
    starts the one worker thread that stores messages in arrival order, so the
    acknowledgements keep that order too. ``stop()`` lets the worker finish the
    message in hand and disconnects; the broker keeps the session and everything
    not acknowledged.
    """

    def __init__(
        self,
        store: Store,
        settings: Mapping[str, Any],
        on_subscribed: Callable[[list[str]], None] | None = None,
    ):
        if paho is None:
            raise ConfigError(
                "MQTT needs the paho-mqtt package: pip install 'paho-mqtt>=2'"
            )
        self.settings = settings
        self.broker = parse_broker_url(settings["CO2LOGSERVER_MQTT_URL"])
        self.handler = ReadingsHandler(store, settings)
        self.filters = subscription_filters(
            self.handler.prefix, settings["CO2LOGSERVER_MQTT_SHARED_GROUP"]
        )
        self.on_subscribed = on_subscribed
        self.max_backoff = max(1.0, float(settings["CO2LOGSERVER_MQTT_MAX_BACKOFF"]))
        self._messages: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connection = 0
        self._worker: threading.Thread | None = None
        #: Messages ``stored``, ``refused`` and tries ``retried`` by this process.
        self.counts: Counter[str] = Counter()
        #: The same for ``/metrics``, with the connection state.
        self.metrics = metrics.mqtt_metrics()
        self.metrics.connected.set(0)
        self.client = self._make_client()

    # -- setup ---------------------------------------------------------------------

    def _make_client(self):
        """A paho client with manual acknowledgement and our callbacks."""
        client_id = str(self.settings["CO2LOGSERVER_MQTT_CLIENT_ID"])
        if not client_id:
            raise ConfigError(
                "CO2LOGSERVER_MQTT_CLIENT_ID must not be empty: the broker keeps the "
                "session (and the queued messages) under it"
            )
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self._set_tls(client)
        client.reconnect_delay_set(1, int(self.max_backoff))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _set_tls(self, client) -> None:
        """Verify the broker's certificate; present ours when one is configured."""
        try:
            client.tls_set(
                ca_certs=self.settings["CO2LOGSERVER_MQTT_TLS_CA_CERTS"],
                certfile=self.settings["CO2LOGSERVER_MQTT_TLS_CERTFILE"],
                keyfile=self.settings["CO2LOGSERVER_MQTT_TLS_KEYFILE"],
            )
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"CO2LOGSERVER_MQTT_TLS_CA_CERTS/_CERTFILE/_KEYFILE: {error}"
            ) from None

    def _connect_properties(self) -> Properties:
        """Keep the session while we are away; bound what is in flight to us."""
        properties = Properties(PacketTypes.CONNECT)
        expiry = int(self.settings["CO2LOGSERVER_MQTT_SESSION_EXPIRY"])
        properties.SessionExpiryInterval = min(max(expiry, 0), 0xFFFFFFFF)
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        return properties

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and connect in the background."""
        self._stopping.clear()
        self._worker = threading.Thread(
            target=self._work, name="co2logserver-mqtt", daemon=True
        )
        self._worker.start()
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=int(self.settings["CO2LOGSERVER_MQTT_KEEPALIVE"]),
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Finish the message in hand, then disconnect; the broker keeps the rest."""
        self._stopping.set()
        self._messages.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        log.info("MQTT subscriber stopped: %s", dict(self.counts))

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties):
        """Subscribe on every connect; acks of earlier connections are void."""
        if reason_code.is_failure:
            log.error(
                "MQTT broker %s:%d refused the connection: %s",
                self.broker.host,
                self.broker.port,
                reason_code,
            )
            return
        with self._lock:
            self._connection += 1
        self.metrics.connected.set(1)
        log.info(
            "connected to MQTT broker %s:%d (session present: %s)",
            self.broker.host,
            self.broker.port,
            flags.session_present,
        )
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])

    def _on_connect_fail(self, _client, _userdata) -> None:
        """Say that the broker cannot be reached; paho tries again with backoff."""
        log.warning(
            "cannot reach the MQTT broker %s:%d; retrying",
            self.broker.host,
            self.broker.port,
        )

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        """Log an unexpected loss; paho reconnects with backoff."""
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties):
        """Report the subscriptions, or why the broker refused them."""
        codes = dict(zip(self.filters, reason_codes, strict=False))
        refused = [topic for topic, code in codes.items() if code.is_failure]
        if refused:
            log.error("MQTT broker refused %s (check its ACL): %s", refused, codes)
            return
        if any(code.value < 1 for code in reason_codes):
            log.warning("MQTT broker granted only QoS 0: messages may be lost")
        if self.on_subscribed is not None:
            self.on_subscribed(list(self.filters))

    def _on_message(self, _client, _userdata, message) -> None:
        """Hand the message to the worker, tagged with its connection."""
        self.metrics.messages.inc()
        self._messages.put((self._connection, message))

    # -- worker thread -------------------------------------------------------------

    def _work(self) -> None:
        """Store messages one at a time, in arrival order, until stopped."""
        while True:
            item = self._messages.get()
            if item is None or self._stopping.is_set():
                return
            connection, message = item
            try:
                self._process(connection, message)
            except Exception:
                # The worker never dies: the message stays unacknowledged and the
                # broker delivers it again after the next reconnect.
                log.exception("failed to process an MQTT message on %s", message.topic)

    def _process(self, connection: int, message) -> None:
        """Store (or refuse) one message, waiting while the database is down.

        A message that came by an earlier connection is still stored: the broker
        delivers it again only if it kept the session, and the safe-retry rule
        absorbs the second copy if it did.
        """
        delay = 0.5
        attempt = 0
        while not self._stopping.is_set():
            outcome = self._attempt(message, attempt)
            if outcome is not RETRY:
                if outcome is not None:
                    self._publish_refusal(outcome, message)
                self._ack(connection, message)
                self.counts["refused" if outcome else "stored"] += 1
                if outcome is None:
                    self.metrics.stored.inc()
                else:
                    self.metrics.refused.labels(type(outcome.error).__name__).inc()
                return
            attempt += 1
            self.counts["retried"] += 1
            self._stopping.wait(delay)
            delay = min(delay * 2, self.max_backoff)
        # Stopped: not acknowledged, so the broker delivers it again.

    def _attempt(self, message, attempt: int):
        """A refusal or ``None`` when the message is done with, else ``RETRY``."""
        try:
            return self.handler.handle(
                message.topic, message.payload, message.properties
            )
        except StorageUnavailable:
            log.warning(
                "database unavailable: the message on %s waits unacknowledged",
                message.topic,
            )
            return RETRY
        except Exception:
            log.exception("failed to store the message on %s", message.topic)
            if attempt + 1 >= UNEXPECTED_ATTEMPTS:
                return self.handler.internal_error(message.topic)
            return RETRY

    def _publish_refusal(self, refusal: Refusal, message) -> None:
        """Answer on the errors topic with the body HTTP would have sent."""
        log.info(
            "refused a message on %s: %d %s",
            message.topic,
            refusal.error.status,
            refusal.error.message,
        )
        self.client.publish(
            refusal.topic,
            json.dumps(error_body(refusal.error.message), ensure_ascii=False),
            qos=1,
            properties=error_properties(refusal.error, message.properties),
        )

    def _ack(self, connection: int, message) -> None:
        """Acknowledge after the commit, on the connection the message came by.

        An old packet id could name another message once the broker has lost the
        session; when the session survived, the broker delivers the message again
        and that delivery is the one to acknowledge.
        """
        if message.qos == 0:
            return
        with self._lock:
            if connection == self._connection:
                self.client.ack(message.mid, message.qos)

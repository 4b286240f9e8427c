"""The paho client: connect, subscribe, store each message, then acknowledge it.

The one worker thread takes messages in arrival order from paho's network thread,
hands each to the :class:`~co2logserver.mqtt.handler.ReadingsHandler`, publishes
a refusal on the sensor's errors topic, and acknowledges only after the commit.
The only module that imports paho (the optional ``mqtt`` extra).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from co2logserver import metrics
from co2logserver.errors import ApiError, ConfigError, error_body
from co2logserver.mqtt.handler import ReadingsHandler, Refusal
from co2logserver.mqtt.topics import parse_broker_url, subscription_filters
from co2logserver.store import Store
from co2logserver.store.errors import StorageUnavailable

try:
    from paho.mqtt import client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # the "mqtt" extra is not installed; MqttSubscriber says so
    paho = None  # type: ignore[assignment]  # checked before every use

# "co2logserver.mqtt", as before the package split: operators' filters still match.
log = logging.getLogger(__package__)

#: QoS 1 messages the broker may have in flight to the subscriber (MQTT 5 Receive
#: Maximum); the rest wait in the broker's persistent queue, not in our memory.
RECEIVE_MAXIMUM = 64
#: Tries of a message that fails for an unexpected reason (a bug, or a race lost to
#: another subscriber) before it is refused with a 500 and acknowledged.
UNEXPECTED_ATTEMPTS = 3
#: Seconds ``stop()`` waits for the message in hand to be stored.
STOP_TIMEOUT = 30.0


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


#: What ``_attempt`` returns for a message to be tried again later.
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

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
The package's parts: :mod:`~co2logserver.mqtt.topics` (the broker URL and what a
topic says), :mod:`~co2logserver.mqtt.handler` (one message into one ingest call)
and :mod:`~co2logserver.mqtt.subscriber` (the paho client and its threads).
"""

from co2logserver.mqtt.handler import (
    InternalError,
    RateLimited,
    ReadingsHandler,
    Refusal,
    SensorRateLimit,
    check_size,
)
from co2logserver.mqtt.subscriber import MqttSubscriber, error_properties
from co2logserver.mqtt.topics import (
    Broker,
    Route,
    authorization_of,
    parse_broker_url,
    parse_topic,
    subscription_filters,
    topic_prefix,
)

__all__ = [
    "Broker",
    "InternalError",
    "MqttSubscriber",
    "RateLimited",
    "ReadingsHandler",
    "Refusal",
    "Route",
    "SensorRateLimit",
    "authorization_of",
    "check_size",
    "error_properties",
    "parse_broker_url",
    "parse_topic",
    "subscription_filters",
    "topic_prefix",
]

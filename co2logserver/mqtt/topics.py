"""Where the broker is and what a topic says: the MQTT addresses of the readings.

The broker URL (``CO2LOGSERVER_MQTT_URL``), the topic prefix, the filters the
subscriber asks for and the reading of one topic back into a sensor, a path and
an OpenSmogHash. Pure and without paho, so the topic rules are tested without a
broker and the handler and the subscriber share one reading of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from co2logserver.errors import ConfigError

SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}


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

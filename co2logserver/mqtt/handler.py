"""One MQTT message into one ingest call, or the refusal to publish instead.

Everything a message meets between the broker and the store: the size limit, the
per-sensor rate limit and :func:`co2logserver.ingest.submit_readings`, so that
validation, verification and safe retries are those of HTTP. It knows nothing of
paho, so it is the same whether the subscriber or a test hands it the message.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limits import parse as parse_rate
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from co2logserver import ingest, rejected
from co2logserver.errors import ApiError, ConfigError, PayloadTooLarge
from co2logserver.mqtt.topics import authorization_of, parse_topic, topic_prefix
from co2logserver.store import Store

# "co2logserver.mqtt", as before the package split: operators' filters still match.
log = logging.getLogger(__package__)

#: Namespace of the per-SUID counters in the rate-limit storage.
RATE_NAMESPACE = "mqtt-sensor"


class RateLimited(ApiError):
    """Too many messages from one sensor (HTTP would answer 429)."""

    status = 429


class InternalError(ApiError):
    """Storing failed for an unexpected reason, again and again (HTTP: 500)."""

    status = 500


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
        except ApiError as error:  # not the store's StorageUnavailable: it waits
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

"""Rate limits on the ingest routes: per sensor (SUID) and per client address.

Views opt in with the markers :func:`per_address` and :func:`per_sensor`;
:func:`init_app` builds one Flask-Limiter ``Limiter`` per app (kept in
``app.extensions``, so apps with different settings never share counters) whose
limits apply only to marked views. Limits are checked before a view reads the body,
so a flood costs a counter increment, not a parse.

The client address is ``request.remote_addr``: behind reverse proxies set
``CO2LOGSERVER_TRUSTED_PROXIES`` so that :func:`trust_proxies` (werkzeug's
``ProxyFix``) takes it from the proxies' own ``X-Forwarded-For`` entries only. A
header a client forges is never trusted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask_limiter import Limit, Limiter, RateLimitExceeded
from limits import parse, parse_many
from limits.errors import ConfigurationError
from werkzeug.middleware.proxy_fix import ProxyFix

from co2logserver.errors import ConfigError, TooManyRequests, error_body

EXTENSION = "co2logserver.limits"
MARK = "_co2logserver_rate_limits"
KEY_MARK = "_co2logserver_sensor_key"
SENSOR = "sensor"
ADDRESS = "address"

#: Which limit guards which scope, and the key naming it in messages.
LIMIT_KEYS = {
    SENSOR: "CO2LOGSERVER_RATELIMIT_SENSOR",
    ADDRESS: "CO2LOGSERVER_RATELIMIT_ADDRESS",
}


def _marked(*scopes: str) -> Callable:
    """Return a decorator that tags a view with the rate-limit scopes it is in."""

    def mark(view: Callable) -> Callable:
        setattr(view, MARK, frozenset(scopes))
        return view

    return mark


#: An ingest view limited per client address (``/upload``).
per_address = _marked(ADDRESS)
#: A sensor API ingest view limited per SUID and per client address.
per_sensor = _marked(SENSOR, ADDRESS)


def per_device(key_function: Callable[[], str | None]) -> Callable:
    """An ingest view of another protocol, limited per device and per address.

    ``key_function`` names the device from what the request shows before its body
    is read (airrohr's ``X-Sensor`` header, ...), so a flood costs no parse.
    """

    def mark(view: Callable) -> Callable:
        setattr(view, MARK, frozenset((SENSOR, ADDRESS)))
        setattr(view, KEY_MARK, key_function)
        return view

    return mark


def hit_sensor_limit(key: str) -> None:
    """Count one request of a device named only in the body (LoRaWAN's DevEUI).

    The same ``CO2LOGSERVER_RATELIMIT_SENSOR`` limit, in the same storage, as the
    limit of marked views; call it once per device after parsing.

    :raise TooManyRequests: 429 with ``Retry-After`` once the device is over it.
    """
    limiter = current_app.extensions.get(EXTENSION)
    if limiter is None:
        return
    item = parse(current_app.config["CO2LOGSERVER_RATELIMIT_SENSOR"])
    try:
        if limiter.limiter.hit(item, "co2logserver-device", key):
            return
        reset = limiter.limiter.get_window_stats(item, "co2logserver-device", key)[0]
    except Exception:  # the storage failed: let the data in, as the views do
        return
    seconds = max(1, math.ceil(reset - time.time()))
    raise TooManyRequests(
        f"Too many requests: at most {item} for this sensor "
        f"(CO2LOGSERVER_RATELIMIT_SENSOR); retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def client_address() -> str:
    """The client's address (after ``ProxyFix`` when proxies are trusted)."""
    return request.remote_addr or "unknown"


def sensor_key() -> str:
    """The SUID of the request's URL, lowercased as it is stored, or the device
    a :func:`per_device` view names."""
    view = current_app.view_functions.get(request.endpoint or "")
    key_function = getattr(view, KEY_MARK, None)
    if key_function is not None:
        return str(key_function() or "none").lower()
    return str((request.view_args or {}).get("suid", "")).lower() or "none"


def exempt_unless(scope: str) -> Callable[[], bool]:
    """A check that exempts every request whose view is not marked with ``scope``."""

    def exempt() -> bool:
        view = current_app.view_functions.get(request.endpoint or "")
        return scope not in getattr(view, MARK, ())

    return exempt


def trust_proxies(app) -> None:
    """Take the client address from ``CO2LOGSERVER_TRUSTED_PROXIES`` proxies.

    Each trusted proxy appends one ``X-Forwarded-For`` entry; ProxyFix reads the
    entry that many places from the right, which the last proxy wrote itself.
    Protocol and host are read the same way, so links the server builds are right.

    :raise ConfigError: when the number is not a whole number of at least 0.
    """
    count = app.config["CO2LOGSERVER_TRUSTED_PROXIES"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(
            "CO2LOGSERVER_TRUSTED_PROXIES must be a whole number (0 trusts none), "
            f"not {count!r}"
        )
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)


def checked_limit(config, scope: str) -> str:
    """Return a limit string from the config after parsing it once.

    :raise ConfigError: naming the key when the string does not parse.
    """
    key = LIMIT_KEYS[scope]
    value = config[key]
    try:
        parse_many(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{key} must be a rate limit such as '120 per minute', not {value!r}"
        ) from None
    return value


def scope_limit(config, scope: str, key_function: Callable[[], str]) -> Limit:
    """One limit shared by every view marked with ``scope``, counted per key."""
    return Limit(
        checked_limit(config, scope),
        key_function=key_function,
        scope=scope,
        shared=True,
        exempt_when=exempt_unless(scope),
    )


def build_limiter(config) -> Limiter:
    """The app's limiter; storage errors let requests through, never fail them.

    :raise ConfigError: for a limit that does not parse.
    """
    limits: list[str | Callable[[], str] | Limit] = [
        scope_limit(config, SENSOR, sensor_key),
        scope_limit(config, ADDRESS, client_address),
    ]
    return Limiter(
        key_func=client_address,
        default_limits=limits,
        storage_uri=config["CO2LOGSERVER_RATELIMIT_STORAGE"],
        strategy="fixed-window",
        key_prefix="co2logserver",
        headers_enabled=False,
        # When Redis is down, count in this process instead, and never answer a
        # sensor with an error because the limiter's storage failed.
        # flask-limiter 4.1 types this list[str], yet takes Limit objects too.
        in_memory_fallback=limits,  # type: ignore[arg-type]
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )


def init_app(app) -> None:
    """Rate-limit the marked views, unless ``CO2LOGSERVER_RATELIMIT_ENABLED`` is off.

    :raise ConfigError: for a limit or storage setting that cannot work.
    """
    app.extensions[EXTENSION] = None
    if not app.config["CO2LOGSERVER_RATELIMIT_ENABLED"]:
        return
    limiter = build_limiter(app.config)
    try:
        limiter.init_app(app)
    except ConfigurationError as error:
        # The URI may hold a Redis password: name its scheme only.
        scheme = str(app.config["CO2LOGSERVER_RATELIMIT_STORAGE"]).partition(":")[0]
        raise ConfigError(
            f"CO2LOGSERVER_RATELIMIT_STORAGE: storage {scheme!r} cannot be used "
            f"({type(error).__name__}); use memory:// or redis://host:port"
        ) from None
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, too_many_requests)


def retry_after(error: RateLimitExceeded) -> int:
    """Whole seconds until the breached limit's window resets (at least 1)."""
    seconds = error.limit.limit.get_expiry()
    limiter = current_app.extensions.get(EXTENSION)
    current = limiter.current_limit if limiter else None
    if current is not None and current.breached:
        try:
            seconds = current.reset_at - time.time()
        except Exception:  # the storage failed meanwhile: a whole window is safe
            pass
    return max(1, math.ceil(seconds))


def too_many_requests(error: RateLimitExceeded) -> tuple[dict[str, Any], int, dict]:
    """Answer a breached limit with the JSON error shape and ``Retry-After``."""
    seconds = retry_after(error)
    scope = error.limit.scope if error.limit.scope in LIMIT_KEYS else ADDRESS
    who = "this sensor" if scope == SENSOR else "this client address"
    message = (
        f"Too many requests: at most {error.limit.limit} for {who} "
        f"({LIMIT_KEYS[scope]}); retry after {seconds} s"
    )
    return error_body(message), 429, {"Retry-After": str(seconds)}


class AttemptLimit:
    """Attempts (sign-in, claim) counted per account and per address.

    Counted with the ``limits`` library in ``CO2LOGSERVER_RATELIMIT_STORAGE``, as
    the ingest limits are, but on even when ``CO2LOGSERVER_RATELIMIT_ENABLED`` is
    off: they guard passwords and claim codes, not throughput. When the storage
    fails, the count goes on in this process instead of letting guesses through.
    """

    def __init__(self, config, key: str, namespace: str):
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.key = key
        self.namespace = namespace
        try:
            self.items = parse_many(config[key])
        except (ValueError, TypeError):
            raise ConfigError(
                f"{key} must be a rate limit such as '10 per minute', "
                f"not {config[key]!r}"
            ) from None
        try:
            storage = storage_from_string(config["CO2LOGSERVER_RATELIMIT_STORAGE"])
        except ConfigurationError:
            storage = MemoryStorage()
        self.limiter = FixedWindowRateLimiter(storage)
        self.fallback = FixedWindowRateLimiter(MemoryStorage())

    def hit(self, *identifiers: str) -> int:
        """Count one attempt under each identifier; 0, or seconds to wait."""
        wait = 0
        for identifier in identifiers:
            for item in self.items:
                wait = max(wait, self._hit(item, identifier))
        return wait

    def _hit(self, item, identifier: str) -> int:
        for limiter in (self.limiter, self.fallback):
            try:
                if limiter.hit(item, self.namespace, identifier):
                    return 0
                stats = limiter.get_window_stats(item, self.namespace, identifier)
                return max(1, math.ceil(stats.reset_time - time.time()))
            except Exception:  # the shared storage failed: count here
                continue
        return 0

"""Prometheus metrics: requests, stored rows and readings, rejections, rate limits,
database errors by cause, group commits, the MQTT subscriber, silent sensors and
the forwarder.

Counters live in the process. Under gunicorn each worker is a process of its own, so
a scrape answered by one worker would show only its share: set the environment
variable ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable by the workers
*before* gunicorn starts (prometheus_client picks its mode when it is imported), and
every worker writes its counters there and any worker's ``/metrics`` sums them all.
Empty the directory when gunicorn restarts. The database gauges (outbox backlog,
database reachability, silent sensors, the newest reading's age) are read at scrape
time, so they need nothing of the kind.

The MQTT subscriber is a process of its own: its metrics exist only there (a web
worker never shows "not connected" for a subscriber it cannot see). Give it the
same ``PROMETHEUS_MULTIPROC_DIR`` as gunicorn and the web server's ``/metrics`` sums
them in; ``python3 -m co2logserver mqtt --metrics-port`` serves them itself too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from co2logserver.errors import ApiError
from co2logserver.store import Store, get_store, outbox
from co2logserver.store import dashboard as dashboard_sql
from co2logserver.store.errors import StorageUnavailable

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT"})

#: Why a payload was refused, by status: the exception class that answers it.
REASONS = {
    **{cls.status: cls.__name__ for cls in ApiError.__subclasses__()},
    429: "RateLimitExceeded",
    500: "InternalServerError",
    # A write's 503 is the database away (and the spool off or full);
    # ArchiveUnavailable, the other 503, answers only reads.
    503: "StorageUnavailable",
}


#: Times in the outbox status shown as gauges, and what they are.
TIMESTAMPS = {
    "last_success_at": "the forwarder's last success (OpenSenseMap)",
    "last_error_at": "the forwarder's last error (OpenSenseMap)",
    "oldest_pending_at": "the oldest outbox item still waiting to be sent",
}


@dataclass(frozen=True)
class Counters:
    """The process's counters, registered once in their own registry."""

    registry: CollectorRegistry
    requests: Counter
    rows: Counter
    readings: Counter
    rejected: Counter
    rate_limited: Counter
    protocol_readings: Counter
    refused_types: Counter
    ignored_fields: Counter
    database_errors: Counter
    group_commit: Histogram


#: Requests per group commit (gthread workers: at most the worker's threads).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def make_counters() -> Counters:
    """Create the counters (once per process: names must be unique in a registry)."""
    registry = CollectorRegistry()
    return Counters(
        registry=registry,
        requests=Counter(
            "co2logserver_http_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        ),
        rows=Counter(
            "co2logserver_rows_stored",
            "Legacy /upload rows stored.",
            registry=registry,
        ),
        readings=Counter(
            "co2logserver_readings_stored",
            "New OpenSmog readings stored (resent duplicates not counted).",
            registry=registry,
        ),
        rejected=Counter(
            "co2logserver_payloads_rejected",
            "POST and PUT requests refused, by endpoint, status and reason.",
            ["endpoint", "status", "reason"],
            registry=registry,
        ),
        rate_limited=Counter(
            "co2logserver_rate_limited_requests",
            "Requests refused by a rate limit (429), by endpoint.",
            ["endpoint"],
            registry=registry,
        ),
        protocol_readings=Counter(
            "co2logserver_protocol_readings_stored",
            "New readings stored from firmware protocols (SPEC §9), by protocol.",
            ["protocol"],
            registry=registry,
        ),
        refused_types=Counter(
            "co2logserver_reading_types_refused",
            "Readings left out because CO2LOGSERVER_ACCEPT_NEW_READING_TYPE refused "
            "their name, by protocol.",
            ["protocol"],
            registry=registry,
        ),
        ignored_fields=Counter(
            "co2logserver_fields_ignored",
            "Fields that are not readings (InfluxDB strings and booleans, ...), "
            "by protocol.",
            ["protocol"],
            registry=registry,
        ),
        database_errors=Counter(
            "co2logserver_database_errors",
            "Database failures that made a request (or MQTT message) wait or answer "
            "503, by cause: locked, unreachable, disk, timeout or other.",
            ["cause"],
            registry=registry,
        ),
        group_commit=Histogram(
            "co2logserver_group_commit_batch_size",
            "Ingest requests stored by one commit (one fsync) of group commit; its "
            "count is the commits, its sum the requests they stored.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        ),
    )


@dataclass(frozen=True)
class MqttMetrics:
    """The MQTT subscriber's metrics, made only in the subscriber's process."""

    connected: Gauge
    messages: Counter
    stored: Counter
    refused: Counter


_mqtt: MqttMetrics | None = None


def mqtt_metrics() -> MqttMetrics:
    """The subscriber's metrics, in the process's registry (created on first use)."""
    global _mqtt
    if _mqtt is None:
        registry = counters().registry
        _mqtt = MqttMetrics(
            connected=Gauge(
                "co2logserver_mqtt_connected",
                "1 while the MQTT subscriber is connected to the broker, else 0.",
                registry=registry,
                multiprocess_mode="livemax",
            ),
            messages=Counter(
                "co2logserver_mqtt_messages",
                "MQTT messages the subscriber received (redeliveries included).",
                registry=registry,
            ),
            stored=Counter(
                "co2logserver_mqtt_messages_stored",
                "MQTT messages stored and acknowledged.",
                registry=registry,
            ),
            refused=Counter(
                "co2logserver_mqtt_messages_refused",
                "MQTT messages refused (answered on the errors topic), by reason: "
                "the error class, as HTTP's payloads_rejected.",
                ["reason"],
                registry=registry,
            ),
        )
    return _mqtt


def count_database_error(cause: str) -> None:
    """Count one database failure by its cause (see Store.on_outage)."""
    counters().database_errors.labels(cause).inc()


_counters: Counters | None = None


def counters() -> Counters:
    """The process's counters, created on first use (never at import)."""
    global _counters
    if _counters is None:
        _counters = make_counters()
    return _counters


def count_group_commit(size: int) -> None:
    """Observe one group commit of ``size`` requests (see store.group_commit)."""
    counters().group_commit.observe(size)


def count_rows(count: int) -> None:
    """Count legacy rows that a committed upload stored."""
    counters().rows.inc(count)


def count_readings(count: int) -> None:
    """Count new readings that a committed request stored."""
    counters().readings.inc(count)


def count_protocol(
    protocol: str, stored: int, refused_types: int = 0, ignored_fields: int = 0
) -> None:
    """Count what a committed request of a firmware protocol stored and left out."""
    found = counters()
    found.readings.inc(stored)
    found.protocol_readings.labels(protocol).inc(stored)
    if refused_types:
        found.refused_types.labels(protocol).inc(refused_types)
    if ignored_fields:
        found.ignored_fields.labels(protocol).inc(ignored_fields)


def count_response(response: Response) -> Response:
    """``after_request``: count the request, and a refused payload by its reason."""
    endpoint = request.endpoint or "none"  # unrouted paths share one label
    method = request.method if request.method in METHODS else "other"
    status = response.status_code
    found = counters()
    found.requests.labels(endpoint, method, str(status)).inc()
    if method in WRITE_METHODS and status >= 400:
        reason = REASONS.get(status, f"HTTP{status}")
        found.rejected.labels(endpoint, str(status), reason).inc()
    if status == 429:
        found.rate_limited.labels(endpoint).inc()
    return response


class StoreCollector:
    """Gauges read from the database at scrape time: reachability, the outbox,
    silent sensors and the age of the newest reading."""

    def __init__(self, store: Store, silent_after: float):
        self.store = store
        self.silent_after = silent_after

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; a database that does not answer gives ``up`` 0 only."""
        yield from spool_gauges(self.store)
        up = GaugeMetricFamily(
            "co2logserver_database_up", "Whether the database answered the scrape."
        )
        now = time.time()
        try:
            with self.store.reading() as conn:
                status = outbox.status(conn)
                sensors = dashboard_sql.sensor_counts(conn, int(self.silent_after), now)
        except StorageUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from outbox_gauges(status)
        yield from sensor_gauges(sensors, now)


def sensor_gauges(counts: Mapping[str, Any], now: float) -> Iterator[Metric]:
    """Sensors by state and how old the newest reading of any sensor is."""
    sensors = GaugeMetricFamily(
        "co2logserver_sensors",
        "Sensors by state: active (a reading within CO2LOGSERVER_SILENT_AFTER) or "
        "silent.",
        labels=["state"],
    )
    sensors.add_metric(["active"], counts["active"])
    sensors.add_metric(["silent"], counts["silent"])
    yield sensors
    if counts.get("newest_reading") is not None:
        yield GaugeMetricFamily(
            "co2logserver_newest_reading_age_seconds",
            "Seconds since the newest reading of any sensor was taken (absent "
            "before the first reading).",
            value=max(0.0, now - counts["newest_reading"]),
        )


def spool_gauges(store: Store) -> Iterator[Metric]:
    """The spool's size and the age of what waits in it longest (SPEC §10)."""
    if store.spool is None:
        return
    status = store.spool.status()
    yield GaugeMetricFamily(
        "co2logserver_spool_bytes",
        "Bytes of requests acknowledged while the database was away, not yet applied.",
        value=status.bytes,
    )
    yield GaugeMetricFamily(
        "co2logserver_spool_segments",
        "Spool segment files waiting to be applied.",
        value=status.segments,
    )
    age = 0.0 if status.oldest_at is None else max(0.0, time.time() - status.oldest_at)
    yield GaugeMetricFamily(
        "co2logserver_spool_oldest_age_seconds",
        "Age of the oldest spool segment waiting (0 when the spool is empty).",
        value=age,
    )


def outbox_gauges(status: dict) -> Iterator[Metric]:
    """The forwarder's backlog and its last success and error times."""
    items = GaugeMetricFamily(
        "co2logserver_outbox_items",
        "OpenSenseMap outbox items by state (pending or parked for good).",
        labels=["state"],
    )
    items.add_metric(["pending"], status["pending"])
    items.add_metric(["parked"], status["parked"])
    yield items
    for name, what in TIMESTAMPS.items():
        # Present (0: never) also while forwarding is off, as documented, so an
        # alert on them finds the series instead of "no data".
        yield GaugeMetricFamily(
            f"co2logserver_forwarder_{name[:-3]}_timestamp_seconds",
            f"UNIX time of {what}; 0 when there is none.",
            value=status.get(name) or 0,
        )


def multiprocess_dir() -> str | None:
    """The directory shared by gunicorn workers, when multiprocess mode is on."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


def exposition(store: Store, settings: Mapping[str, Any]) -> bytes:
    """The metrics in the Prometheus text format, summed over workers if set up."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(counters().registry)
    registry.register(StoreCollector(store, settings["CO2LOGSERVER_SILENT_AFTER"]))
    return generate_latest(registry)


def metrics_response(store: Store, settings: Mapping[str, Any]) -> Response:
    """``GET /metrics``."""
    return Response(exposition(store, settings), content_type=CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    """Count every response of ``app``, and the store's database failures."""
    counters()
    app.after_request(count_response)
    store = get_store(app)
    store.on_outage = count_database_error
    if store.group is not None:
        store.group.on_commit = count_group_commit

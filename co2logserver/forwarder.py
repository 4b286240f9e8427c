"""Drain the durable outbox to the OpenSenseMap, in the background.

The outbox lives in the database, written in the same transaction as the data, so an
upload never waits for the OpenSenseMap and nothing is lost when it is down. One
forwarder is active across all gunicorn workers and hosts: whoever holds the lease in
the database. The thread restarts itself after a fork and survives any job failure.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from co2logserver.errors import ApiError
from co2logserver.store import Store, outbox
from co2logserver.store import sensors as sensor_sql

log = logging.getLogger(__name__)

LEASE = "opensensemap-forwarder"
LEASE_SECONDS = 30.0
IDLE_SECONDS = 2.0
WAIT_AGAIN_SECONDS = 60.0


@dataclass
class Round:
    """What one pass over the outbox did."""

    sent: int = 0
    parked: int = 0
    waiting: int = 0
    retry: bool = False


@dataclass
class Backoff:
    """Exponential backoff capped at ``maximum`` seconds."""

    maximum: float
    current: float = 0.0

    def failed(self) -> float:
        """Seconds to wait after another failure."""
        self.current = min(self.maximum, max(1.0, self.current * 2))
        return self.current

    def succeeded(self) -> None:
        """Start from the beginning after a success."""
        self.current = 0.0


def default_client_factory(settings: Mapping[str, Any]):
    """The real OpenSenseMap client (sensemapi), imported only when forwarding."""
    from co2logserver import osem

    return osem.OsemForwarder(osem.make_account(settings), settings)


@dataclass
class OutboxForwarder:
    """Sends outbox items box by box; one instance per process."""

    store: Store
    settings: Mapping[str, Any]
    client_factory: Callable[[Mapping[str, Any]], Any] = default_client_factory
    holder: str = field(
        default_factory=lambda: (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
    )

    def __post_init__(self) -> None:
        self.backoff = Backoff(float(self.settings["CO2LOGSERVER_OSEM_MAX_BACKOFF"]))
        self._client = None
        self._waiting: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None

    # ------------------------------------------------------------------ one round

    @property
    def client(self):
        """The OpenSenseMap client, made on first use."""
        if self._client is None:
            self._client = self.client_factory(self.settings)
        return self._client

    def run_once(self) -> Round:
        """Send one batch of pending items, grouped per box in outbox order."""
        from co2logserver import osem

        result = Round()
        now = time.time()
        self._waiting = {b: t for b, t in self._waiting.items() if t > now}
        with self.store.reading() as conn:
            items = outbox.pending(
                conn, self.settings["CO2LOGSERVER_OSEM_BATCH_SIZE"], self._waiting
            )
        for (kind, box), group in group_items(items).items():
            try:
                self.send(kind, box, group)
            except osem.OsemNoLocation as error:
                self.mark_waiting(box, group, error.message)
                result.waiting += len(group)
            except osem.OsemRefused as error:
                self.finish(group, parked_reason=error.message)
                result.parked += len(group)
            except osem.OsemRetryable as error:
                self.failed(group, error.message)
                result.retry = True
                break
            except Exception as error:  # never let one job end the forwarder
                log.error("forwarding box %r failed", box, exc_info=True)
                self.failed(group, f"{type(error).__name__}: {error}")
                result.retry = True
                break
            else:
                self.finish(group)
                result.sent += len(group)
        return result

    def send(self, kind: str, box: str, group: list) -> None:
        """Forward one box's items with one call."""
        payloads = [json.loads(item.payload) for item in group]
        if kind == outbox.LEGACY:
            self.client.forward_legacy(payloads)
            return
        observations = [(p["timestamp"], p["readings"]) for p in payloads]
        self.client.forward_readings(box, self.location(box), observations)

    def location(self, suid: str) -> tuple[float, float, float | None] | None:
        """The sensor's location at public precision, else the default hooks."""
        decimals = self.settings["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]
        with self.store.reading() as conn:
            sensor = sensor_sql.get_sensor(conn, suid)
        if sensor is not None and sensor.latitude is not None:
            elevation = None if sensor.elevation is None else round(sensor.elevation)
            return (
                round(sensor.latitude, decimals),
                round(sensor.longitude, decimals),
                elevation,
            )
        lat = self.settings["CO2LOGSERVER_DEFAULT_LAT"](suid)
        lon = self.settings["CO2LOGSERVER_DEFAULT_LON"](suid)
        if lat is None or lon is None:
            return None
        return float(lat), float(lon), None

    def finish(self, group: list, parked_reason: str | None = None) -> None:
        """Delete sent items, or park refused ones with the reason."""
        ids = [item.id for item in group]
        with self.store.transaction() as conn:
            if parked_reason is None:
                outbox.delete(conn, ids)
                outbox.record(conn, None)
            else:
                outbox.park(conn, ids, parked_reason)
                outbox.record(conn, f"refused for good: {parked_reason}")
        if parked_reason is None:
            self.backoff.succeeded()
        else:
            log.warning("parked %d outbox items: %s", len(ids), parked_reason)

    def failed(self, group: list, reason: str) -> None:
        """Count the attempt; the items stay and are sent after the backoff."""
        with self.store.transaction() as conn:
            outbox.note_attempt(conn, [item.id for item in group], reason)
            outbox.record(conn, reason)

    def mark_waiting(self, box: str, group: list, reason: str) -> None:
        """Items of a box without a location wait; other boxes go on."""
        self._waiting[box] = time.time() + WAIT_AGAIN_SECONDS
        with self.store.transaction() as conn:
            outbox.note_attempt(conn, [item.id for item in group], reason)

    # ------------------------------------------------------------------ the loop

    def holds_lease(self) -> bool:
        """Take or renew the lease; only its holder forwards."""
        try:
            with self.store.transaction() as conn:
                return outbox.acquire_lease(conn, LEASE, self.holder, LEASE_SECONDS)
        except ApiError:
            return False

    def step(self) -> float:
        """One loop iteration; returns the seconds to sleep before the next."""
        if not self.holds_lease():
            return LEASE_SECONDS / 3
        try:
            result = self.run_once()
        except ApiError as error:  # the database itself is away
            log.warning("forwarder cannot read the outbox: %s", error.message)
            return self.backoff.failed()
        if result.retry:
            return self.backoff.failed()
        if result.sent + result.parked >= self.settings["CO2LOGSERVER_OSEM_BATCH_SIZE"]:
            return 0.0
        return IDLE_SECONDS

    def run_forever(self) -> None:
        """Forward until :meth:`stop`; for ``python3 -m co2logserver forward``."""
        log.info("OpenSenseMap forwarder %s started", self.holder)
        while not self._stop.is_set():
            try:
                pause = self.step()
            except Exception:  # keep forwarding whatever one step did
                log.error("forwarder step failed", exc_info=True)
                pause = self.backoff.failed()
            self._stop.wait(pause)
        self.release()

    def release(self) -> None:
        """Give the lease up when stopping, so another process takes over at once."""
        try:
            with self.store.transaction() as conn:
                outbox.release_lease(conn, LEASE, self.holder)
        except ApiError:
            pass

    def ensure_thread(self) -> None:
        """Start the background thread, again after a fork (gunicorn --preload)."""
        if self._thread_pid == os.getpid() and self._thread and self._thread.is_alive():
            return
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.run_forever, name="co2logserver-forwarder", daemon=True
        )
        self._thread_pid = os.getpid()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end and wait for it."""
        self._stop.set()
        if self._thread and self._thread_pid == os.getpid():
            self._thread.join(timeout)


def group_items(items: list) -> dict[tuple[str, str], list]:
    """Items per (kind, box), each group in outbox order, groups by first item."""
    groups: dict[tuple[str, str], list] = {}
    for item in items:
        groups.setdefault((item.kind, item.box), []).append(item)
    return groups


EXTENSION = "co2logserver.forwarder"


def init_app(app) -> None:
    """Run the forwarder thread in this server process when forwarding is on."""
    settings = app.config
    if not (
        settings["CO2LOGSERVER_OSEM_UPLOAD"]
        and settings["CO2LOGSERVER_OSEM_FORWARDER_THREAD"]
    ):
        return
    from co2logserver.store import get_store

    forwarder = OutboxForwarder(get_store(app), settings)
    app.extensions[EXTENSION] = forwarder
    app.before_request(forwarder.ensure_thread)
    forwarder.ensure_thread()

"""The outbox forwarder: drains the outbox so uploads never wait for OSEM.

Ingest writes outbox items in the transaction that stores the data; this worker
sends them, box by box and in outbox order: one :class:`~.plans.BoxPlan` per
outbox group and one :meth:`~.client.OsemClient.forward` call for it. It runs as a
daemon thread in each server process (:func:`co2logserver.forwarding.init_app`)
or as ``python3 -m co2logserver forward``; a :class:`~.lease.Lease` lets exactly
one of them send at a time, renewed by a keeper thread while the holder lives.

What happens to an item:

* OSEM accepted it: deleted, and the last success recorded;
* OSEM is unreachable, answers 5xx or 429: it stays, the round ends, and the next
  one follows an exponential backoff capped at ``CO2LOGSERVER_OSEM_MAX_BACKOFF``;
* OSEM refuses it for good (a 4xx to the data POST or to creating its box):
  parked with OSEM's reason, never sent again; a 4xx to an account or box-list
  call is retried like an outage (see :mod:`co2logserver.forwarding.client`);
* its senseBox does not exist and no position is known: it waits, and the other
  boxes go on. An OpenSmog sensor's items go as soon as it has a location (a PUT
  with one); a legacy box is tried again every ``WAIT_SECONDS``.

Delivery is exactly once while the holder lives; if it dies after OSEM stored a
batch but before the items were deleted, the next holder sends them again (the
at-least-once window documented in ``docs/forwarding.rst``). "The database is
away" is the store's :class:`StorageUnavailable` and nothing else: an HTTP error
of OSEM never makes the worker back off as if its own database were gone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver.background import ProcessThread
from co2logserver.forwarding import plans, process
from co2logserver.forwarding.errors import (
    OsemNoLocation,
    OsemRefused,
    OsemRetryable,
    scrub,
)
from co2logserver.forwarding.lease import Backoff, Lease, new_holder
from co2logserver.store import StorageUnavailable, Store, outbox
from co2logserver.store import accounts as accounts_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.forks import guarded

log = logging.getLogger(__name__)

LEASE = "opensensemap-forwarder"
#: Pause between rounds when the outbox had nothing more to send.
IDLE_SECONDS = 2.0
#: How long a box waits after a failure that is its own (no position, a bug).
WAIT_SECONDS = 60.0
#: Floor of the backoff, so a zero setting cannot make a busy loop.
MIN_BACKOFF = 0.1
#: Floor of the lease time, so the others' polling cannot become a busy loop.
MIN_LEASE_SECONDS = 1.0
#: How long stopping waits for a round in progress.
STOP_TIMEOUT = 10.0

BoxKey = tuple[str, str]


@dataclass
class Round:
    """What one pass over the outbox did."""

    fetched: int = 0
    sent: int = 0
    parked: int = 0
    waiting: int = 0
    retry: bool = False


def default_client_factory(settings: Mapping[str, Any]) -> Any:
    """The real OpenSenseMap client (sensemapi), imported only when forwarding."""
    from co2logserver.forwarding.account import make_account
    from co2logserver.forwarding.client import OsemClient

    return OsemClient(make_account(settings), settings)


class OutboxForwarder:
    """Sends outbox items box by box; one instance per process."""

    def __init__(
        self,
        store: Store,
        settings: Mapping[str, Any],
        client_factory: Callable[[Mapping[str, Any]], Any] = default_client_factory,
    ) -> None:
        """Read the settings once; the OSEM client is made on first use."""
        self.store = store
        self.settings = settings
        self.client_factory = client_factory
        self.batch_size = int(settings["CO2LOGSERVER_OSEM_BATCH_SIZE"])
        maximum = float(settings["CO2LOGSERVER_OSEM_MAX_BACKOFF"])
        self.backoff = Backoff(max(MIN_BACKOFF, maximum))
        seconds = float(settings["CO2LOGSERVER_OSEM_LEASE_SECONDS"])
        self.lease = Lease(store, LEASE, max(MIN_LEASE_SECONDS, seconds))
        self._client: Any = None
        #: Boxes that wait: until a monotonic time, or None until located.
        self._waiting: dict[BoxKey, float | None] = {}
        self._runner = ProcessThread(
            "co2logserver-forwarder",
            self.run_forever,
            on_new_process=lambda: self.lease.renew_as(new_holder()),
        )
        self._stopped_pid: int | None = None

    @property
    def holder(self) -> str:
        """This process's name in the lease table."""
        return self.lease.holder

    @property
    def client(self) -> Any:
        """The OpenSenseMap client, made on first use."""
        if self._client is None:
            self._client = self.client_factory(self.settings)
        return self._client

    # ------------------------------------------------------------------ one round

    def run_once(self, still_leased: Callable[[], bool] | None = None) -> Round:
        """Send one batch of pending items, grouped per box in outbox order.

        The caller holds the lease (:meth:`step` does); ``still_leased`` is asked
        before each box, so a lost lease ends the round before anything more goes.

        :raise StorageUnavailable: when the database is away (the items stay).
        """
        result = Round()
        items = self.pending_items()
        result.fetched = len(items)
        for (kind, box), group in group_items(items).items():
            if still_leased is not None and not still_leased():
                break
            if not self.forward_group(kind, box, group, result):
                break
        return result

    def pending_items(self) -> list:
        """The oldest items, leaving out boxes that still have to wait."""
        self.end_waits()
        with guarded(self.store.reading()) as conn:
            return outbox.pending(conn, self.batch_size, set(self._waiting))

    def forward_group(self, kind: str, box: str, group: list, result: Round) -> bool:
        """Send one box's items and settle them; False ends the round (OSEM away)."""
        try:
            self.send(kind, box, group)
        except OsemNoLocation as error:
            self.mark_waiting(kind, box, group, error.message)
            result.waiting += len(group)
        except OsemRefused as error:
            self.park(group, error.message)
            result.parked += len(group)
        except OsemRetryable as error:
            self.failed(group, error.message)
            result.retry = True
            return False
        except StorageUnavailable:
            raise  # the database is away: the caller backs off
        except Exception as error:  # never let one box's data end the forwarder
            log.error("forwarding %s box %r failed", kind, box, exc_info=True)
            reason = f"forwarding failed: {type(error).__name__}: {error}"
            self.failed(group, reason)
            self._waiting[(kind, box)] = time.monotonic() + WAIT_SECONDS
        else:
            self.delivered(group)
            result.sent += len(group)
        return True

    def send(self, kind: str, box: str, group: list) -> None:
        """Forward one box's items: one plan, one client call."""
        plan = self.plan(kind, box, group)
        if plan is not None:
            self.client.forward(plan)

    def plan(self, kind: str, box: str, group: list) -> plans.BoxPlan | None:
        """The plan of one outbox group; None if its box is not forwarded."""
        payloads = [json.loads(item.payload) for item in group]
        if kind == outbox.LEGACY:
            return plans.legacy_plan(box, payloads, self.settings)
        observations = [(p["timestamp"], p["readings"]) for p in payloads]
        return plans.readings_plan(box, self.location(box), observations, self.settings)

    def location(self, suid: str) -> plans.Location | None:
        """The sensor's box position, as :func:`plans.sensor_home` decides it."""
        with guarded(self.store.reading()) as conn:
            sensor = sensor_sql.get_sensor(conn, suid)
            hidden = suid in accounts_sql.hidden_locations(conn)
        return plans.sensor_home(suid, sensor, hidden, self.settings)

    # -------------------------------------------------------- settling items

    def delivered(self, group: list) -> None:
        """Delete items OSEM accepted and note the success."""
        with guarded(self.store.transaction()) as conn:
            outbox.delete(conn, [item.id for item in group])
            outbox.record(conn, None)

    def park(self, group: list, reason: str) -> None:
        """Keep refused items for good with OSEM's reason."""
        reason = self.scrub(reason)
        with guarded(self.store.transaction()) as conn:
            outbox.park(conn, [item.id for item in group], reason)
            outbox.record(conn, f"refused for good: {reason}")
        log.warning("parked %d outbox items: %s", len(group), reason)

    def failed(self, group: list, reason: str) -> None:
        """Count the attempt; the items stay and are sent after the backoff."""
        reason = self.scrub(reason)
        with guarded(self.store.transaction()) as conn:
            outbox.note_attempt(conn, [item.id for item in group], reason)
            outbox.record(conn, reason)
        log.info("OpenSenseMap forwarding waits: %s", reason)

    def mark_waiting(self, kind: str, box: str, group: list, reason: str) -> None:
        """Items of a box without a position wait; other boxes go on."""
        if kind == outbox.READINGS:
            self._waiting[(kind, box)] = None  # until the sensor has a location
        else:
            self._waiting[(kind, box)] = time.monotonic() + WAIT_SECONDS
        with guarded(self.store.transaction()) as conn:
            outbox.note_attempt(conn, [item.id for item in group], reason)
        log.info("%s box %r waits: %s", kind, box, reason)

    def end_waits(self) -> None:
        """Let boxes go whose wait is over or whose sensor got a location."""
        now = time.monotonic()
        self._waiting = {
            key: until
            for key, until in self._waiting.items()
            if until is None or until > now
        }
        suids = [box for (kind, box), until in self._waiting.items() if until is None]
        if not suids:
            return
        with guarded(self.store.reading()) as conn:
            located = outbox.located_sensors(conn, suids)
        for suid in located:
            del self._waiting[(outbox.READINGS, suid)]

    def scrub(self, text: str) -> str:
        """The text without the OSEM password or any token (it is shown on pages)."""
        return scrub(text, [self.settings["CO2LOGSERVER_OSEM_PASSWORD"]])

    # ------------------------------------------------------------------ the loop

    def step(self) -> float:
        """One loop iteration; returns the seconds to sleep before the next."""
        if not self.lease.acquire():
            return self.lease.seconds / 3
        try:
            result = self.run_once(still_leased=self.may_go_on)
        except StorageUnavailable as error:  # the database itself is away
            log.warning("forwarder cannot use the outbox: %s", error.message)
            return self.backoff.failed()
        if result.retry:
            return self.backoff.failed()
        if result.sent or result.parked:
            self.backoff.succeeded()
        if result.fetched >= self.batch_size and (result.sent or result.parked):
            return 0.0
        return IDLE_SECONDS

    def may_go_on(self) -> bool:
        """Whether to send the next box: lease still valid and no stop asked."""
        return self.lease.valid() and not self._runner.stop_event.is_set()

    def run_forever(self) -> None:
        """Forward until :meth:`stop`; then give the lease up."""
        log.info("OpenSenseMap forwarder %s started", self.holder)
        keeper = threading.Thread(
            target=self.keep_lease, name="co2logserver-forwarder-lease", daemon=True
        )
        keeper.start()
        try:
            while not self._runner.stop_event.is_set():
                self._runner.stop_event.wait(self.safe_step())
        finally:
            self._runner.stop_event.set()
            keeper.join(STOP_TIMEOUT)
            self.release()

    def safe_step(self) -> float:
        """:meth:`step`, logging instead of raising whatever goes wrong."""
        try:
            return self.step()
        except Exception:  # keep forwarding whatever one step did
            log.error("forwarder step failed", exc_info=True)
            return self.backoff.failed()

    def keep_lease(self) -> None:
        """Renew a held lease while a round runs, however long OSEM takes."""
        while not self._runner.stop_event.wait(self.lease.seconds / 3):
            if self.lease.valid():
                self.lease.acquire()

    def release(self) -> None:
        """Give the lease up when stopping, so another process takes over at once."""
        self.lease.release()

    # ---------------------------------------------------------- thread control

    def ensure_thread(self) -> None:
        """Start the background thread, again in a forked child (gunicorn --preload)."""
        if self._stopped_pid == os.getpid():
            return
        if self._runner.start():
            process.running(self)

    def thread_alive(self) -> bool:
        """Whether this process runs the forwarder thread."""
        return self._runner.alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the loop to end (it releases the lease) and wait for it."""
        self._stopped_pid = os.getpid()
        self._runner.stop(timeout)


def group_items(items: Iterable) -> dict[BoxKey, list]:
    """Items per (kind, box), each group in outbox order, groups by first item."""
    groups: dict[BoxKey, list] = {}
    for item in items:
        groups.setdefault((item.kind, item.box), []).append(item)
    return groups

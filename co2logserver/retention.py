"""Retention: delete raw readings older than ``CO2LOGSERVER_RETENTION_DAYS``.

A :class:`Sweeper` deletes, oldest first and in batches of at most
:data:`BATCH_ROWS` rows (one short write transaction each, see
:mod:`co2logserver.store.retention`), readings and legacy ``data`` rows past the
raw retention, and hourly rollups past ``CO2LOGSERVER_ROLLUP_RETENTION_DAYS`` when
that is set. Deleting by age is its own bookmark: a sweep stopped anywhere (Ctrl-C,
a restart) is resumed by the next one, and two sweeps at once only share the work.

:class:`RetentionThread` runs sweeps in the server: started by a worker's first
request, never at import or in gunicorn's master. It reuses the forwarder's
database lease (one sweeper across workers and hosts) and its fork guard.
``python3 -m co2logserver retention-sweep`` runs one sweep to its end.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver.background import ProcessThread
from co2logserver.forwarding.lease import Lease, new_holder
from co2logserver.store import Store
from co2logserver.store import retention as sql
from co2logserver.store.errors import StorageUnavailable
from co2logserver.store.forks import guarded

log = logging.getLogger(__name__)

DAY = 86400
#: Most rows one write transaction deletes: a few milliseconds of the writers' turn.
BATCH_ROWS = 2000
#: Registrations looked up per read transaction.
REGISTRATIONS_PER_LOOKUP = 200
#: Shortest pause between batches, so queued writers take the turn first.
PAUSE = 0.005
#: Seconds between sweeps of the server's thread.
INTERVAL = 600.0
LEASE = "retention-sweeper"
#: The lease outlives the pause between sweeps, so its holder keeps it.
LEASE_SECONDS = 3 * INTERVAL
EXTENSION = "co2logserver.retention"


@dataclass
class Batch:
    """What one batch deleted, and how long it held the write transaction."""

    table: str
    deleted: int
    seconds: float


@dataclass
class Cutoffs:
    """What is old: readings before ``raw`` (UNIX seconds), rollups of hours
    before ``rollups`` (None: kept)."""

    raw: int
    rollups: int | None


def cutoffs(settings: Mapping[str, Any], now: float | None = None) -> Cutoffs | None:
    """The cutoffs of the configured retention; None when it is off."""
    days = settings["CO2LOGSERVER_RETENTION_DAYS"]
    if days is None:
        return None
    now = time.time() if now is None else now
    rollup_days = settings["CO2LOGSERVER_ROLLUP_RETENTION_DAYS"]
    rollups = None
    if rollup_days is not None:
        rollups = sql.rollup_cutoff(now - rollup_days * DAY)
    return Cutoffs(int(now - days * DAY), rollups)


class Sweeper:
    """Deletes what is past retention, batch by batch."""

    def __init__(
        self, store: Store, cut: Cutoffs, batch_rows: int = BATCH_ROWS
    ) -> None:
        """Sweep ``store`` for what ``cut`` calls old."""
        self.store = store
        self.cut = cut
        self.batch_rows = batch_rows

    def batches(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Batch]:
        """Delete batch after batch until nothing is old or ``stop()`` says so."""
        parts = [self.readings, self.legacy_rows, self.rollups]
        for part in parts:
            for batch in part():
                yield batch
                if stop():
                    return
                # At least as long as the batch took: a long first sweep takes at
                # most half of the writers' time, whatever the disk's speed.
                time.sleep(max(PAUSE, batch.seconds))

    def write(self, table: str, work: Callable[..., int], *args: Any) -> Batch:
        """Run ``work(conn, *args)`` in one write transaction, timed from the moment
        it holds the writers' turn (waiting for the turn is not holding it up)."""
        with guarded(self.store.transaction()) as conn:
            started = time.monotonic()
            deleted = work(conn, *args)
        return Batch(table, deleted, time.monotonic() - started)

    def read(self, work: Callable[..., Any], *args: Any) -> Any:
        """Run ``work(conn, *args)`` in a read transaction (never holds ingest up)."""
        with guarded(self.store.reading()) as conn:
            return work(conn, *args)

    def readings(self) -> Iterator[Batch]:
        """Readings before the cutoff, registration by registration."""
        cutoff, after, limit = self.cut.raw, 0, self.batch_rows
        while True:
            found = self.read(
                sql.registrations_with_old_readings,
                cutoff,
                after,
                REGISTRATIONS_PER_LOOKUP,
            )
            for registration in found:
                while True:
                    batch = self.write(
                        "readings", sql.delete_old_readings, registration, cutoff, limit
                    )
                    yield batch
                    if batch.deleted < limit:
                        break
            if len(found) < REGISTRATIONS_PER_LOOKUP:
                return
            after = found[-1]

    def legacy_rows(self) -> Iterator[Batch]:
        """Rows of the legacy data table uploaded before the cutoff."""
        data = self.store.data
        where = (data.name, data.upload_time_column, utc(self.cut.raw))
        if not self.read(sql.has_table, data.name, data.upload_time_column):
            return  # no legacy table, or none with this upload-time column
        while True:
            if self.store.dialect == "postgresql":
                batch = self.write(
                    "data", sql.delete_old_data_postgres, *where, self.batch_rows
                )
                if batch.deleted:
                    yield batch
                if batch.deleted < self.batch_rows:
                    return
                continue
            rows = self.read(sql.find_old_data_rows, *where, self.batch_rows)
            if rows is None:
                return
            yield self.write("data", sql.delete_data_rows, *where, rows)

    def rollups(self) -> Iterator[Batch]:
        """Hourly rollups before their own cutoff, when it is set and they exist."""
        cutoff = self.cut.rollups
        if cutoff is None or not self.read(sql.has_table, sql.ROLLUPS):
            return
        while True:
            groups = self.read(sql.find_old_rollups, cutoff, self.batch_rows)
            if not groups:
                return
            yield self.write("rollups", sql.delete_rollups, groups, cutoff)

    def count(self) -> int:
        """How many rows the sweep will delete (scans: for a progress bar)."""
        data = self.store.data
        cut = self.cut

        def counting(conn) -> int:
            total = sql.count_old_readings(conn, cut.raw)
            if sql.has_table(conn, data.name, data.upload_time_column):
                total += sql.count_old_data_rows(
                    conn, data.name, data.upload_time_column, utc(cut.raw)
                )
            if cut.rollups is not None and sql.has_table(conn, sql.ROLLUPS):
                total += sql.count_old_rollups(conn, cut.rollups)
            return total

        return self.read(counting)


def utc(seconds: int) -> datetime.datetime:
    """A UNIX time as an aware UTC datetime (the legacy upload column's type)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


class RetentionThread:
    """Sweeps every :data:`INTERVAL` seconds in the process holding the lease."""

    def __init__(
        self,
        store: Store,
        settings: Mapping[str, Any],
        interval: float = INTERVAL,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        """Read the settings once; nothing runs until :meth:`ensure_thread`."""
        self.store = store
        self.settings = settings
        self.interval = interval
        self.lease = Lease(store, LEASE, lease_seconds)
        self._runner = ProcessThread(
            "co2logserver-retention",
            self.run_forever,
            on_new_process=lambda: self.lease.renew_as(new_holder()),
        )
        #: Rows deleted by this process's sweeps (for tests and the log).
        self.deleted = 0

    def sweep_once(self) -> int:
        """One sweep to its end (or until stopped); returns the rows deleted."""
        cut = cutoffs(self.settings)
        if cut is None:
            return 0
        deleted, renewed = 0, time.monotonic()
        for batch in Sweeper(self.store, cut).batches(self._runner.stop_event.is_set):
            deleted += batch.deleted
            self.deleted += batch.deleted
            if time.monotonic() - renewed > self.lease.seconds / 3:
                if not self.lease.acquire():
                    break  # another process took over
                renewed = time.monotonic()
        if deleted:
            log.info("retention: deleted %d old rows", deleted)
        return deleted

    def run_forever(self) -> None:
        """Sweep while holding the lease, until :meth:`stop`; then release it."""
        try:
            while not self._runner.stop_event.is_set():
                try:
                    if self.lease.acquire():
                        self.sweep_once()
                except StorageUnavailable as error:  # the database is away: next time
                    log.warning("retention sweep stopped: %s", error.message)
                except Exception:  # a failed sweep never ends the thread
                    log.error("retention sweep failed", exc_info=True)
                self._runner.stop_event.wait(self.interval)
        finally:
            self.lease.release()

    def ensure_thread(self) -> None:
        """Start the thread in this process (again in a forked child)."""
        self._runner.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end after its batch, and wait for it."""
        self._runner.stop(timeout)


def init_app(app) -> None:
    """Sweep in the background of this server when retention is on.

    The thread starts with a worker's first request, so neither gunicorn's master
    (``--preload``) nor command-line tools that build the app ever sweep.
    """
    settings = app.config
    if (
        settings["CO2LOGSERVER_RETENTION_DAYS"] is None
        or not settings["CO2LOGSERVER_RETENTION_THREAD"]
    ):
        return
    from co2logserver.store import get_store

    thread = RetentionThread(get_store(app), settings)
    app.extensions[EXTENSION] = thread
    app.before_request(thread.ensure_thread)

"""Ingest that keeps working while the database is away (SPEC §10).

:func:`submit` is what the web layer calls for every write: it runs the normal
ingest function, and when that finds the database away it *admits* the request to
the spool instead — after the same validation and, for secure sensors, the same
signature check against the worker's cached credentials — so the sensor gets its
normal success status for data that is on disk. The :class:`Applier` thread (one
active per host, by a lock file in the spool directory) then replays spooled
requests through the same ingest functions, with their receive time, once the
database answers; each record is marked applied in the transaction that stores it,
so a crash never applies one twice, and dedup makes resent readings harmless.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from co2logserver import auth, devices, ingest, verify
from co2logserver.devices import DeviceReadings, DeviceRequest, DeviceResult
from co2logserver.errors import ApiError
from co2logserver.observation_checks import checked_payload
from co2logserver.parsers import Batch
from co2logserver.spool import APPLIER_LOCK, Record, Spool, decode
from co2logserver.store import AlreadyApplied, Store, applying, doubt, forget_marks
from co2logserver.store.errors import StorageUnavailable
from co2logserver.store.group_commit import joining

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Admission: what the spool may take while the database is away
# --------------------------------------------------------------------------------------


def not_cached() -> StorageUnavailable:
    """503 for a signed request this worker cannot verify without the database."""
    return StorageUnavailable(
        "The database is unavailable and this sensor's registration is not known to "
        "this worker, so its signature cannot be checked; retry later. Nothing was "
        "stored.",
        retry_after=30,
    )


def admit_readings(store: Store, settings: Mapping, now: float, **args) -> dict:
    """A ``/v1`` or ``/rogue/v1`` post: signature from the cache, then payload."""
    suid = auth.parse_suid(args["suid"])
    authorization, rogue_route = args["authorization"], args["rogue_route"]
    credentials = store.registrations.get(suid)
    if credentials is None and authorization is not None and not rogue_route:
        raise not_cached()
    if credentials is not None and credentials.secure:
        verify.check_signature(
            settings, credentials, authorization, args["raw_body"] or args["body"],
            rogue_route, now,
        )  # fmt: skip
    _observations, error = checked_payload(args["body"], settings, now)
    if error:
        raise error
    return {**args, "suid": suid}


def admit_upload(store: Store, settings: Mapping, now: float, **args) -> dict:
    """A legacy upload (checked before the database was asked): its parsed rows."""
    batch: Batch = args["batch"]
    return {
        "columns": batch.columns,
        "length": batch.length,
        "matches": dict(args["matches"]),
    }


def admit_devices(store: Store, settings: Mapping, now: float, **args) -> dict:
    """A firmware protocol's request (checked already): credentials from the cache.

    The credential itself is never written to disk: the SUIDs it was checked for
    are recorded instead.
    """
    request: DeviceRequest = args["request"]
    authorized = []
    for device in request.devices:
        suid = devices.suid_for(device.name)
        credentials = store.registrations.get(suid)
        if request.network_verified:
            continue
        if credentials is None:
            if request.credential is not None:
                raise not_cached()
            continue
        if credentials.secure:
            devices.check_credential(suid, credentials, request)
            authorized.append(suid)
    return {
        "protocol": request.protocol,
        "devices": [
            [d.name, [list(r) for r in d.readings], d.location] for d in request.devices
        ],
        "network_verified": request.network_verified,
        "authorized": authorized,
    }


# --------------------------------------------------------------------------------------
# Applying: the same ingest functions, with the receive time
# --------------------------------------------------------------------------------------


def apply_readings(store: Store, settings: Mapping, now: float, args: dict) -> Any:
    """Store a spooled ``/v1`` post."""
    return ingest.submit_readings(store, settings, now=now, **args)


def apply_upload(store: Store, settings: Mapping, now: float, args: dict) -> Any:
    """Store a spooled legacy upload."""
    batch = Batch(args["columns"], args["length"])
    return ingest.ingest_upload(store, settings, batch, args["matches"], now=now)


def apply_devices(store: Store, settings: Mapping, now: float, args: dict) -> Any:
    """Store a spooled firmware-protocol request."""
    request = DeviceRequest(
        args["protocol"],
        [
            DeviceReadings(
                name, [tuple(r) for r in readings], location and tuple(location)
            )
            for name, readings, location in args["devices"]
        ],
        network_verified=args["network_verified"],
    )
    return devices.submit_devices(
        store, settings, request, now=now, authorized=frozenset(args["authorized"])
    )


#: kind -> (normal ingest, admission to the spool, applying a record, spooled result)
KINDS: dict[str, tuple[Callable, Callable, Callable, Callable]] = {
    "readings": (
        lambda store, settings, **a: ingest.submit_readings(store, settings, **a),
        admit_readings,
        apply_readings,
        lambda args: 0,
    ),
    "upload": (
        lambda store, settings, **a: ingest.ingest_upload(store, settings, **a),
        admit_upload,
        apply_upload,
        lambda args: args["length"],
    ),
    "devices": (
        lambda store, settings, **a: devices.submit_devices(store, settings, **a),
        admit_devices,
        apply_devices,
        lambda args: DeviceResult(sum(len(d[1]) for d in args["devices"])),
    ),
}


def submit(store: Store, settings: Mapping, kind: str, **args) -> Any:
    """Ingest a request now, or spool it when the database is away.

    Returns what the ingest function returns; for a spooled request, what it will
    store (rows of an upload, readings of a protocol request; ``0`` new ``/v1``
    readings, which are counted when applied).

    :raise ApiError: everything the ingest function raises, and 503 when the spool
        is off, full, or cannot verify a signed request.
    """
    ingest_now, admit, _apply, spooled = KINDS[kind]
    try:
        with joining():  # may share its commit with other threads' requests
            result = ingest_now(store, settings, **args)
    except StorageUnavailable as error:
        spool: Spool | None = store.spool
        if spool is None:
            raise
        received = time.time()
        record_args = admit(store, settings, received, **args)
        if error.in_doubt is not None:  # committed, perhaps: the applier asks first
            record_args[doubt.SPOOL_KEY] = error.in_doubt
        spool.append(kind, record_args, received)
        applier_of(store, settings).wake()
        return spooled(record_args)
    if store.applier is not None:
        store.applier.database_answered()
    return result


# --------------------------------------------------------------------------------------
# The applier thread
# --------------------------------------------------------------------------------------


class Applier:
    """Replays one database's spool when the database is back (one per host)."""

    def __init__(self, store: Store, settings: Mapping, spool: Spool):
        self.store, self.settings, self.spool = store, settings, spool
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._pending = False
        self._done: set[str] = set()
        self._retry = threading.Event()  # set: the database answered, retry now
        self._backing_off = False

    def wake(self) -> None:
        """Make sure a thread of this process works the spool off."""
        with self._lock:
            self._pending = True
            if os.getpid() != self._pid:  # forked: the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="co2logserver-spool", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        backoff = 0.2
        while True:
            with self._lock:
                if not self._pending and not self.spool.segments():
                    self._thread = None
                    return
                self._pending = False
            try:
                if self.apply_all():
                    backoff = 0.2
                    time.sleep(0.05 if self.spool.segments() else 0)
                    continue
            except StorageUnavailable:
                pass
            except Exception:  # never let the thread die with records waiting
                log.exception("spool: applying failed; trying again")
            with self._lock:
                self._pending = True
            self._backing_off = True
            if self._retry.wait(backoff):
                backoff = 0.2
            else:
                backoff = min(backoff * 2, 5.0)
            self._backing_off = False
            self._retry.clear()

    def database_answered(self) -> None:
        """A write of this worker reached the database: stop waiting out the backoff.

        Without this the backlog of an outage waited up to the longest backoff (5 s)
        after the database was back, while live posts were stored already.
        """
        if self._backing_off:
            self._retry.set()

    def apply_all(self) -> bool:
        """Apply every segment under the host's lock; ``False`` if another holds it.

        :raise StorageUnavailable: when the database is still away.
        """
        with open(self.spool.directory / APPLIER_LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            for segment in self.spool.segments():
                self.apply_segment(segment)
        return True

    def apply_segment(self, segment) -> None:
        """Apply a segment's records in order, then remove it if nothing was added."""
        try:
            data = segment.read_bytes()
        except FileNotFoundError:
            return
        for _end, record in decode(segment, data):
            if record.id not in self._done:
                self.apply(record)
                self._done.add(record.id)
        self.remove_if_done(segment, len(data))

    def apply(self, record: Record) -> None:
        """Store one record; a refusal is kept in the rejected log, never retried."""
        apply_kind = KINDS[record.kind][2]
        in_doubt = record.args.pop(doubt.SPOOL_KEY, None)
        try:
            if in_doubt is not None and self.committed_before(record, in_doubt):
                with applying(record.id), self.store.transaction():
                    return  # only mark it applied
            with applying(record.id):
                apply_kind(self.store, self.settings, record.received_at, record.args)
        except AlreadyApplied:
            return
        except StorageUnavailable:
            raise
        except ApiError as error:
            self.spool.reject(record, f"{error.status} {error.message}")
        except Exception as error:  # a bug must not block every later record
            log.exception("spool: %s could not be applied", record.id)
            self.spool.reject(record, f"{type(error).__name__}")
        else:
            return
        with applying(record.id), self.store.transaction():
            pass  # mark the refused record applied

    def committed_before(self, record: Record, transaction_id: int) -> bool:
        """Whether the commit that failed on its way for ``record`` did happen.

        :raise StorageUnavailable: while PostgreSQL still runs that transaction
            (or is away): the record waits for the next try.
        """
        with self.store.reading() as conn:
            outcome = doubt.outcome(conn, transaction_id)
        if outcome == "in progress":
            raise StorageUnavailable("the failed commit is still in progress")
        if outcome == "committed":
            log.info(
                "spool: %s was committed before the database went away; "
                "not stored again",
                record.id,
            )
            return True
        if outcome is None:
            log.warning(
                "spool: whether %s was committed is too old to tell; applying it",
                record.id,
            )
        return False

    def remove_if_done(self, segment, applied_size: int) -> None:
        """Delete a segment no writer has added to, then forget its marks."""
        try:
            fd = os.open(segment, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a writer is appending: next round
            if os.fstat(fd).st_size != applied_size:
                return
            os.unlink(segment)
        finally:
            os.close(fd)
        with self.store.transaction() as conn:
            forget_marks(conn, segment.name + ":")
        self._done = {d for d in self._done if not d.startswith(segment.name + ":")}


def applier_of(store: Store, settings: Mapping) -> Applier:
    """The store's applier (created once per store)."""
    if store.applier is None:
        store.applier = Applier(store, settings, store.spool)
    return store.applier


def resume(store: Store, settings: Mapping) -> None:
    """At start: apply what an earlier process spooled (after a crash or restart)."""
    if store.spool is not None and store.spool.segments():
        applier_of(store, settings).wake()

"""The spool: requests acknowledged while the database is away (SPEC §10).

A sensor cannot keep what the server refuses, so when the database is down a
request that passed parsing, validation and authentication is appended here,
fsynced, and answered as if it had been stored; :mod:`co2logserver.applier` writes
it to the database once it is back.

On disk: a directory of *segments*, one per writing process
(``<ns since epoch>-<pid>.seg``), so a process killed mid-write can only leave a
torn record at the end of its own segment. A record is ``MAGIC``, the length and the
CRC-32 of its msgpack body; a reader stops a segment at the first record that is
short or fails its checksum (nothing acknowledged is in such a record: the reply is
sent only after ``fsync``). The spool is bounded by ``CO2LOGSERVER_SPOOL_MAX_BYTES``.
No Flask, no database.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from co2logserver.errors import ConfigError
from co2logserver.store.errors import StorageUnavailable

log = logging.getLogger(__name__)

MAGIC = b"CLS1"
HEADER = struct.Struct(">4sII")  # magic, body length, CRC-32 of the body
SEGMENT_SUFFIX = ".seg"
APPLIER_LOCK = "applier.lock"
REJECTED = "rejected.log"


@dataclass(frozen=True)
class Record:
    """One spooled request: where it is, when it arrived, what to apply."""

    id: str
    received_at: float
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class SpoolStatus:
    """What ``/health`` and ``/metrics`` show of the spool."""

    bytes: int
    segments: int
    oldest_at: float | None


def default_directory(database_url: str) -> Path:
    """Where a database's spool lives unless ``CO2LOGSERVER_SPOOL_DIR`` says.

    Next to an SQLite file; for a server database, under the working directory in a
    folder named by a hash of the URL, so two databases never share a spool.
    """
    if database_url.startswith("sqlite:///"):
        return Path(database_url.removeprefix("sqlite:///") + ".spool")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path.cwd() / "co2logserver-spool" / digest


def encode(record: Record) -> bytes:
    """A record as it is written: header and msgpack body."""
    body = msgpack.packb(
        [record.received_at, record.kind, record.args], use_bin_type=True
    )
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def decode(segment: Path, data: bytes) -> Iterator[tuple[int, Record]]:
    """The whole records of a segment's bytes, with the offset each one ends at."""
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        body = data[start : start + length]
        if magic != MAGIC or len(body) < length or zlib.crc32(body) != crc:
            log.warning(
                "spool: %s has a torn or corrupt record at byte %d (a write cut off "
                "by a crash; it was never acknowledged): skipped",
                segment.name,
                offset,
            )
            return
        received_at, kind, args = msgpack.unpackb(body, raw=False)
        yield (
            start + length,
            Record(f"{segment.name}:{offset}", received_at, kind, args),
        )
        offset = start + length


class Spool:
    """One database's spool directory: appending, reading and its status."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._segment: tuple[int, int] | None = None  # (pid, fd)
        self._refused_at_bytes: int | None = None  # size when it last was full

    @classmethod
    def from_settings(cls, settings: Mapping, database_url: str) -> Spool | None:
        """The configured spool, or ``None`` when ``CO2LOGSERVER_SPOOL_MAX_BYTES`` is 0.

        :raise ConfigError: when the directory cannot be created or written.
        """
        max_bytes = settings["CO2LOGSERVER_SPOOL_MAX_BYTES"]
        if not max_bytes:
            return None
        configured = settings["CO2LOGSERVER_SPOOL_DIR"]
        directory = Path(configured) if configured else default_directory(database_url)
        if not configured and database_url.startswith("sqlite:///"):
            folder = directory.parent
            if not folder.is_dir():
                raise ConfigError(
                    f"CO2LOGSERVER_DB: the directory {str(folder)!r} of the SQLite "
                    "file does not exist"
                )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise ConfigError(
                f"CO2LOGSERVER_SPOOL_DIR: cannot write the spool directory "
                f"{str(directory)!r}: {error.strerror or error}"
            ) from None
        return cls(directory, max_bytes)

    def append(self, kind: str, args: dict[str, Any], received_at: float) -> None:
        """Write one request durably (fsync) before it is acknowledged.

        :raise StorageUnavailable: 503 + Retry-After when the spool is full or
            cannot be written.
        """
        data = encode(Record("", received_at, kind, args))
        size = self.status().bytes
        if size + len(data) > self.max_bytes:
            self._refused_at_bytes = size
            raise self.refusal("the spool is full (CO2LOGSERVER_SPOOL_MAX_BYTES)")
        self._refused_at_bytes = None
        try:
            with self._lock:
                self._write(data)
        except OSError as error:
            log.error("spool: cannot write %s: %s", self.directory, error)
            raise self.refusal("the spool cannot be written") from None

    def _write(self, data: bytes) -> None:
        fd = self._open_segment()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_nlink == 0:  # the applier finished and removed it
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                self._segment = None
                fd = self._open_segment()
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _open_segment(self) -> int:
        pid = os.getpid()
        if self._segment is not None and self._segment[0] == pid:
            return self._segment[1]
        name = f"{time.time_ns():020d}-{pid}{SEGMENT_SUFFIX}"
        fd = os.open(
            self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the new file's name survives a power loss too
        finally:
            os.close(directory)
        self._segment = (pid, fd)
        return fd

    def refusal(self, why: str) -> StorageUnavailable:
        """The 503 for a request the spool cannot take."""
        return StorageUnavailable(
            f"The database is unavailable and {why}; retry later. Nothing was stored.",
            retry_after=30,
        )

    def accepting(self, size: int) -> bool:
        """Whether a request would still fit (as far as this process has seen)."""
        full = self._refused_at_bytes is not None and size >= self._refused_at_bytes
        return size < self.max_bytes and not full

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        try:
            return sorted(self.directory.glob("*" + SEGMENT_SUFFIX))
        except OSError:
            return []

    def status(self) -> SpoolStatus:
        """Bytes and segments waiting, and when the oldest segment was started."""
        total, oldest, count = 0, None, 0
        for segment in self.segments():
            try:
                size = segment.stat().st_size
            except FileNotFoundError:  # applied and removed meanwhile
                continue
            if not size:
                continue
            total += size
            count += 1
            started = int(segment.name.split("-", 1)[0]) / 1e9
            oldest = started if oldest is None else min(oldest, started)
        return SpoolStatus(total, count, oldest)

    def reject(self, record: Record, why: str) -> None:
        """Keep a record the database refused when applied (never silently lost)."""
        line = f"{time.time():.0f} {record.id} {record.kind}: {why}\n"
        with open(self.directory / REJECTED, "a", encoding="utf-8") as out:
            out.write(line)
        log.error(
            "spool: %s (%s) refused when applied: %s", record.id, record.kind, why
        )

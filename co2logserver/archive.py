"""Daily archives: one file per complete UTC day of every reading, written once.

A day's file holds each reading with its sensor's SUID, alias, quantity, unit,
verified flag, time and value, and the *public* location only
(:func:`co2logserver.readings.public_location`; none where the owner hid it). It is
written to a temporary file, fsynced and renamed into place, then its SHA-256 goes
beside it (``<file>.sha256``, the format of ``sha256sum``): a file without a
matching checksum is incomplete or corrupt, is rewritten by the next run and is
never served. gzip is written without a time stamp, so rewriting a day from the
same database gives the same bytes. No Flask.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import gzip
import hashlib
import importlib.util
import io
import itertools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from co2logserver.readings import public_location
from co2logserver.store import Store
from co2logserver.store import archive as archive_sql

log = logging.getLogger(__name__)

#: The columns of every archive file, in order.
COLUMNS = (
    "suid", "alias", "quantity", "unit", "verified", "timestamp", "value",
    "latitude", "longitude", "elevation",
)  # fmt: skip
#: What an archive file is called; nothing else in the directory is ever served.
NAME = re.compile(r"readings-([0-9]{4}-[0-9]{2}-[0-9]{2})\.(csv\.gz|parquet)")
CHECKSUM_SUFFIX = ".sha256"
CONTENT_TYPES = {
    "csv.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}
#: Rows per Parquet row group (and per batch held in memory).
PARQUET_BATCH = 100_000


class IncompleteDay(ValueError):
    """The day asked for has not ended yet (UTC)."""


class CorruptArchive(Exception):
    """An archive file does not match its recorded checksum (or has none)."""


@dataclass(frozen=True)
class ArchiveFile:
    """A listed archive file: its name, day, format, size and SHA-256."""

    name: str
    day: str
    format: str
    size: int
    sha256: str


def formats() -> tuple[str, ...]:
    """The formats written here: CSV.gz always, Parquet when pyarrow is installed."""
    if importlib.util.find_spec("pyarrow") is not None:
        return ("csv.gz", "parquet")
    return ("csv.gz",)


def archive_directory(settings: Mapping[str, Any]) -> Path | None:
    """``CO2LOGSERVER_ARCHIVE_DIR`` as a path, or ``None`` when archives are off."""
    value = settings.get("CO2LOGSERVER_ARCHIVE_DIR")
    return Path(value) if value else None


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def day_bounds(day: datetime.date) -> tuple[int, int]:
    """``[start, end)`` of a UTC day in UNIX seconds."""
    start = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
    return int(start.timestamp()), int(start.timestamp()) + 86400


def require_complete(day: datetime.date, today: datetime.date | None = None) -> None:
    """:raise IncompleteDay: for today or a later day (UTC)."""
    today = today or utc_today()
    if day >= today:
        raise IncompleteDay(
            f"{day.isoformat()} is not complete yet (today is {today.isoformat()} "
            "UTC): a day is archived once it has ended"
        )


def complete_days(store: Store, today: datetime.date | None = None) -> list:
    """Every day from the first stored reading's up to yesterday (UTC)."""
    today = today or utc_today()
    with store.reading() as conn:
        first = archive_sql.first_reading_time(conn)
    if first is None:
        return []
    day = datetime.datetime.fromtimestamp(first, datetime.UTC).date()
    days = []
    while day < today:
        days.append(day)
        day += datetime.timedelta(days=1)
    return days


def file_name(day: datetime.date, fmt: str) -> str:
    return f"readings-{day.isoformat()}.{fmt}"


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def recorded_checksum(path: Path) -> str | None:
    """The SHA-256 written beside ``path``, or ``None`` without a readable one."""
    try:
        text = checksum_path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    digest, _, name = text.strip().partition("  ")
    if name != path.name or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    return digest


def sha256_of(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while block := file.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def is_valid(path: Path) -> bool:
    """Whether ``path`` exists and matches the checksum recorded beside it."""
    expected = recorded_checksum(path)
    if expected is None:
        return False
    try:
        with path.open("rb") as file:
            return sha256_of(file) == expected
    except OSError:
        return False


def open_verified(directory: Path, name: str) -> tuple[IO[bytes], int]:
    """An archive file opened for serving, after its checksum matched, and its size.

    The hash is read from the same open file that is then served, so a rewrite in
    between cannot swap the bytes.

    :raise OSError: for a name that is no archive file, or not there (or no file).
    :raise CorruptArchive: when it does not match its checksum (or has none).
    """
    if not NAME.fullmatch(name):
        raise FileNotFoundError(name)
    path = directory / name
    file = path.open("rb")
    try:
        expected = recorded_checksum(path)
        if expected is None or sha256_of(file) != expected:
            raise CorruptArchive(name)
        size = os.fstat(file.fileno()).st_size
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, size


def list_files(directory: Path) -> list[ArchiveFile]:
    """The archive files that were written whole (a checksum beside them), newest
    first. The listing does not re-hash them; serving does."""
    found: list[ArchiveFile] = []
    if not directory.is_dir():
        return found
    for entry in os.scandir(directory):
        match = NAME.fullmatch(entry.name)
        path = Path(entry.path)
        if not match or not entry.is_file():
            continue
        digest = recorded_checksum(path)
        if digest is None:
            continue
        size = entry.stat().st_size
        found.append(ArchiveFile(entry.name, match[1], match[2], size, digest))
    return sorted(found, key=lambda f: (f.day, f.format), reverse=True)


# ------------------------------------------------------------------ writing


def day_rows(store: Store, decimals: int, day: datetime.date) -> Iterator[tuple]:
    """Every reading of ``day`` as the archive's cells, by SUID, registration, time."""
    start, end = day_bounds(day)
    with store.reading() as conn:
        for reg in archive_sql.day_registrations(conn, start, end):
            place = None
            if reg.location_public:
                place = public_location(
                    reg.latitude, reg.longitude, reg.elevation, decimals
                )
            latitude, longitude, elevation = place or (None, None, None)
            for ts, code, value in archive_sql.day_readings(conn, reg, start, end):
                quantity = store.quantities.by_code(conn, code)
                yield (
                    reg.suid, reg.alias, quantity.name, quantity.unit, reg.secure,
                    ts, value, latitude, longitude, elevation,
                )  # fmt: skip


class CsvGzWriter:
    """Rows into a gzip'd CSV with a header; no time stamp in the gzip header.

    A batch is rendered into one string and compressed at once (level 6): row by
    row through a text wrapper cost more than the query.
    """

    def __init__(self, file: IO[bytes]):
        self.gzip = gzip.GzipFile(
            fileobj=file, mode="wb", compresslevel=6, mtime=0, filename=""
        )
        self.buffer = io.StringIO()
        self.csv = csv.writer(self.buffer, lineterminator="\n")
        self.csv.writerow(COLUMNS)

    def write(self, rows: list[tuple]) -> None:
        self.csv.writerows(
            (*row[:4], "true" if row[4] else "false", *row[5:]) for row in rows
        )
        self.gzip.write(self.buffer.getvalue().encode())
        self.buffer.seek(0)
        self.buffer.truncate()

    def close(self) -> None:
        if self.buffer.tell():  # the header of a day without readings
            self.gzip.write(self.buffer.getvalue().encode())
        self.gzip.close()  # writes the gzip trailer; the file stays open


class ParquetWriter:
    """Rows into Parquet, one row group per batch (memory stays flat)."""

    def __init__(self, file: IO[bytes]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema(
            [
                ("suid", pa.string()),
                ("alias", pa.string()),
                ("quantity", pa.string()),
                ("unit", pa.string()),
                ("verified", pa.bool_()),
                ("timestamp", pa.int64()),
                ("value", pa.float64()),
                ("latitude", pa.float64()),
                ("longitude", pa.float64()),
                ("elevation", pa.float64()),
            ]
        )
        self.writer = pq.ParquetWriter(file, self.schema)

    def write(self, rows: list[tuple]) -> None:
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
        types = self.schema.types
        arrays = [self.pa.array(c, t) for c, t in zip(columns, types, strict=True)]
        self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


WRITERS: dict[str, Callable[[IO[bytes]], Any]] = {
    "csv.gz": CsvGzWriter,
    "parquet": ParquetWriter,
}


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temporary: Path, final: Path) -> None:
    """Move a written, fsynced file into place, then record its checksum the same way.

    The checksum is the commit mark: until it is in place, the file counts as
    missing.
    """
    with temporary.open("rb") as file:
        digest = sha256_of(file)
    checksum_path(final).unlink(missing_ok=True)
    os.replace(temporary, final)
    mark = temporary.with_name(temporary.name + CHECKSUM_SUFFIX)
    with mark.open("w", encoding="ascii") as file:
        file.write(f"{digest}  {final.name}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(mark, checksum_path(final))
    fsync_directory(final.parent)


def write_day(
    store: Store, decimals: int, directory: Path, day: datetime.date
) -> tuple[list[str], int]:
    """Write the day's files that are missing or corrupt; the names written and the
    number of readings. A day whose files are all valid costs no query."""
    wanted = [fmt for fmt in formats() if not is_valid(directory / file_name(day, fmt))]
    if not wanted:
        return [], 0
    temporary = {
        fmt: directory / f".{file_name(day, fmt)}.tmp-{os.getpid()}" for fmt in wanted
    }
    files = {fmt: path.open("wb") for fmt, path in temporary.items()}
    count = 0
    writers: list[Any] = []
    try:
        writers += [WRITERS[fmt](files[fmt]) for fmt in wanted]
        rows = day_rows(store, decimals, day)
        while batch := list(itertools.islice(rows, PARQUET_BATCH)):
            for writer in writers:
                writer.write(batch)
            count += len(batch)
        while writers:
            writers.pop().close()
        for file in files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
        for fmt in wanted:
            publish(temporary[fmt], directory / file_name(day, fmt))
    finally:
        for writer in writers:  # interrupted: end them before their files go
            with contextlib.suppress(Exception):
                writer.close()
        for fmt, file in files.items():
            file.close()
            temporary[fmt].unlink(missing_ok=True)
    return [file_name(day, fmt) for fmt in wanted], count


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """One archive run per directory at a time; stale temporary files removed.

    :raise RuntimeError: when another run holds the directory.
    """
    with (directory / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another archive run is writing to {str(directory)!r}"
            ) from None
        for entry in directory.glob(".readings-*.tmp-*"):
            entry.unlink(missing_ok=True)  # left by a run that was killed
        yield

"""Small helpers that configuration files may import (as they could in 0.1.2)."""

import datetime

__all__ = ["utc_datetime_from_unix_timestamp", "unix_timestamp"]

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def utc_datetime_from_unix_timestamp(seconds: float) -> datetime.datetime:
    """Return the timezone-aware UTC datetime of whole UNIX ``seconds``."""
    return EPOCH + datetime.timedelta(seconds=int(seconds))


def unix_timestamp(dt: datetime.datetime) -> int:
    """Return the whole UNIX seconds of ``dt`` (naive datetimes count as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return int((dt - EPOCH).total_seconds())

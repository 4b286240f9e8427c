"""The store's own error: the database cannot be reached or is locked too long.

The store knows nothing of HTTP: it says what went wrong and how long a caller had
best wait (``retry_after`` seconds); :mod:`co2logserver.web.errors` answers it as
503 with ``Retry-After``, the MQTT subscriber leaves the message unacknowledged,
the spool keeps a request for later. This module imports nothing of the package,
so every layer may catch the error without reaching up.
"""

from __future__ import annotations


class StorageUnavailable(Exception):
    """The database cannot be reached or is locked; the caller should retry.

    ``message`` is for a client (no driver text, no statement); ``retry_after`` is
    the seconds to wait before retrying, ``None`` when there is no advice.
    ``in_doubt`` is the PostgreSQL transaction id of a commit that failed on its
    way, which may have happened (:mod:`co2logserver.store.doubt`).
    """

    def __init__(
        self,
        message: str,
        retry_after: int | None = None,
        in_doubt: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.in_doubt = in_doubt

"""The database lease that lets one process forward, and the backoff between tries.

Every server process (and ``python3 -m co2logserver forward``) may run a forwarder,
but only the holder of the lease sends: two senders would post the same items
twice. The lease lives in the database (``store.outbox``), so it spans workers and
hosts, and it expires by itself when its holder dies.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from co2logserver.store import StorageUnavailable, Store, outbox
from co2logserver.store.forks import guarded

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential backoff from 1 second, capped at ``maximum`` seconds."""

    maximum: float
    current: float = 0.0

    def failed(self) -> float:
        """Seconds to wait after another failure."""
        self.current = min(self.maximum, max(1.0, self.current * 2))
        return self.current

    def succeeded(self) -> None:
        """Start from the beginning after a success."""
        self.current = 0.0


def new_holder() -> str:
    """A lease holder name that tells the operator which process holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A named lease in the database; only its holder forwards.

    ``valid()`` is checked before each box without a database round trip: it is
    true until ``seconds`` after the last successful renewal started, which ends
    before the row expires for everyone else.
    """

    def __init__(self, store: Store, name: str, seconds: float) -> None:
        """Describe the lease; nothing is taken yet."""
        self.store = store
        self.name = name
        self.seconds = seconds
        self.holder = new_holder()
        self._valid_until = 0.0

    def acquire(self) -> bool:
        """Take or renew the lease; False if another holder has it or the DB is away."""
        started = time.monotonic()
        try:
            with guarded(self.store.transaction()) as conn:
                taken = outbox.acquire_lease(conn, self.name, self.holder, self.seconds)
        except StorageUnavailable:
            taken = False
        self._valid_until = started + self.seconds if taken else 0.0
        return taken

    def valid(self) -> bool:
        """Whether this process may send now."""
        return time.monotonic() < self._valid_until

    def release(self) -> None:
        """Give the lease up, so that another process takes over at once."""
        self._valid_until = 0.0
        try:
            with guarded(self.store.transaction()) as conn:
                outbox.release_lease(conn, self.name, self.holder)
        except StorageUnavailable:
            log.warning("could not release the forwarder lease; it expires by itself")

    def renew_as(self, holder: str) -> None:
        """Use a new holder name (a forked child is another process)."""
        self.holder = holder
        self._valid_until = 0.0

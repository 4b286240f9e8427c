"""Keep a sensor's refused requests for its owner's page (SPEC §12), without Flask.

HTTP (:mod:`co2logserver.web.rejections`) and MQTT (:mod:`co2logserver.mqtt`) call
:func:`note` where they answer a refusal. A row is kept only for a SUID that exists,
at most :data:`~co2logserver.store.accounts.REJECTIONS_KEPT` per sensor, with the
first bytes of the body and never a header (so never a signature). Keeping it
never fails the caller.
"""

from __future__ import annotations

import logging
import threading
import time

from co2logserver.store import Store
from co2logserver.store import accounts as sql
from co2logserver.store.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: Characters of the body kept.
EXCERPT = 120
#: A sensor over its rate limit is noted at most once per this many seconds (per
#: process), so a flood of 429s costs no write each.
THROTTLE_SECONDS = 60.0

#: After the database was unavailable, nothing is noted for this many seconds.
PAUSE_SECONDS = 30.0

_throttled: dict[str, float] = {}
_paused_until = 0.0
_lock = threading.Lock()


def note(
    store: Store,
    suid: str,
    status: int,
    protocol: str,
    message: str,
    body: bytes | None,
) -> None:
    """Keep one refused request of ``suid`` (unless throttled); never raises."""
    suid = str(suid).lower()[:36]
    if status == 429 and throttled(suid):
        return
    values = {
        "suid": suid,
        "at": int(time.time()),
        "status": status,
        "protocol": protocol[:64],
        "message": str(message)[:500],
        "excerpt": None if body is None else excerpt(body),
    }
    global _paused_until
    if time.monotonic() < _paused_until:
        return
    try:
        with store.transaction() as conn:
            sql.record_rejection(conn, values)
    except StorageUnavailable:
        # The database is away: refusals are not worth a connect timeout each.
        _paused_until = time.monotonic() + PAUSE_SECONDS
    except Exception:  # the owner's table is a courtesy; the answer stands
        log.warning("could not keep a rejected request", exc_info=True)


def excerpt(body: bytes) -> str | None:
    """The start of a body as text (``None`` when empty)."""
    text = body[: EXCERPT * 4].decode("utf-8", "replace")[:EXCERPT]
    return text or None


def throttled(suid: str) -> bool:
    """Whether a 429 of ``suid`` was noted less than a minute ago."""
    now = time.monotonic()
    with _lock:
        if now - _throttled.get(suid, -THROTTLE_SECONDS) < THROTTLE_SECONDS:
            return True
        if len(_throttled) > 10_000:
            _throttled.clear()
        _throttled[suid] = now
    return False

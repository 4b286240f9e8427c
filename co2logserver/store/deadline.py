"""How long the database calls of a thread may still wait: one clock per store call.

A request may make several round trips (a pool checkout with its ping, a reconnect,
statements, the commit) and queue for locks on the way. Bounding each of them alone
lets the waits add up; so a store call opens a *budget* and every wait below it (the
PostgreSQL driver's, the SQLite writers' lock and busy timeout) takes only what is
left. Budgets nest and an inner one never outlasts the outer one.

The clock is per thread: a gunicorn worker (or one of its threads) serves one
request at a time, and the store's context managers open and close the budget around
exactly that request's database work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Let the database waits of the block take ``seconds`` in all (None: no total)."""
    outer = getattr(_local, "ends", None)
    ends = None if seconds is None else time.monotonic() + seconds
    if outer is not None and (ends is None or outer < ends):
        ends = outer
    _local.ends = ends
    try:
        yield
    finally:
        _local.ends = outer


def remaining() -> float | None:
    """Seconds left of the thread's budget (never below 0), or None without one."""
    ends = getattr(_local, "ends", None)
    if ends is None:
        return None
    return max(0.0, ends - time.monotonic())


def clamp(bound: float | None) -> float | None:
    """The time one wait may take: ``bound``, or less when the budget ends sooner."""
    left = remaining()
    if left is None:
        return bound
    return left if bound is None else min(bound, left)

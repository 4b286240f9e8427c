"""PostgreSQL engines whose every wait ends in time, even when the server is silent.

A clean stop closes the connections and psycopg fails at once. A host that hangs,
a server process that is stopped (SIGSTOP, a VM paused) or a network partition
closes nothing: the connection stays open and no answer ever comes, and on a stopped
server the kernel even acknowledges what is sent, so neither TCP retransmission
timeouts nor keepalives notice. Four bounds together cover every case:

* ``connect_timeout`` for new connections and ``pool_timeout`` for a checkout;
* the server's ``statement_timeout`` for a slow statement or a lock wait;
* ``tcp_user_timeout`` and keepalives, so the kernel drops a connection whose
  peer stopped acknowledging (a partition, a dead host);
* a clock in the client: every wait of psycopg on the server (a statement, a fetch,
  the commit, the pool's ping) gets a timeout, shortened to what is left of the
  store call's budget (:mod:`co2logserver.store.deadline`).

All four are ``CO2LOGSERVER_DB_TIMEOUT``. psycopg is imported only here, so SQLite
installations do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.errors import _WaitTimeout as WaitTimeout
from sqlalchemy import Engine, create_engine, event

from co2logserver.store import deadline

#: Seconds between psycopg's wake-ups while it waits (its own default).
WAIT_INTERVAL = 0.1
#: libpq's shortest connect timeout: smaller values are raised to it.
MIN_CONNECT_TIMEOUT = 2
#: Seconds an idle connection waits before the kernel probes its peer.
KEEPALIVES_IDLE = 30


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server has a timeout."""

    #: Seconds one wait may last; a store call's budget may shorten it.
    bound: float | None = None

    def wait(self, gen, interval: float = WAIT_INTERVAL, timeout: float | None = None):
        """psycopg's wait, bounded by :attr:`bound` and the thread's budget.

        psycopg passes its own ``timeout`` only for waits it already bounds
        (cancelling, notifications); those keep theirs.
        """
        if timeout is None:
            timeout = deadline.clamp(self.bound)
        try:
            return super().wait(gen, interval=interval, timeout=timeout)
        except WaitTimeout:
            # The protocol stopped half-way: the connection cannot be used again.
            # Closed, it reads as a disconnect to SQLAlchemy, which discards it
            # instead of pooling it.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"timed out: the database did not answer within {timeout:g} s"
            ) from None


def connection_parameters(
    bound: float, cparams: Mapping[str, Any], left: float
) -> dict[str, Any]:
    """The connection's parameters with the timeouts added (the URL's keep theirs)."""
    milliseconds = max(1, round(bound * 1000))
    connect_timeout = max(MIN_CONNECT_TIMEOUT, math.ceil(left))
    if "connect_timeout" in cparams:
        connect_timeout = min(connect_timeout, int(cparams["connect_timeout"]))
    options = f"{cparams.get('options', '')} -c statement_timeout={milliseconds}"
    return {
        "tcp_user_timeout": milliseconds,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE,
        "keepalives_interval": max(1, math.ceil(bound / 3)),
        "keepalives_count": 3,
        **cparams,
        "connect_timeout": connect_timeout,
        "options": options.strip(),
    }


def connect(bound: float, cargs, cparams: Mapping[str, Any]) -> BoundedConnection:
    """Open a connection within ``bound`` and what is left of the budget.

    :raise psycopg.OperationalError: when the budget is spent or the server does
        not answer in time.
    """
    remaining = deadline.remaining()
    left = bound if remaining is None else min(bound, remaining)
    if left <= 0:
        raise psycopg.errors.ConnectionTimeout(
            "connection timeout: no time left to connect"
        )
    conn = BoundedConnection.connect(
        *cargs, **connection_parameters(bound, cparams, left)
    )
    conn.bound = bound
    return conn


def postgres_engine(url: str, settings: Mapping[str, Any]) -> Engine:
    """A PostgreSQL engine that replaces broken connections and bounds every wait."""
    bound = float(settings["CO2LOGSERVER_DB_TIMEOUT"])
    engine = create_engine(
        url,
        hide_parameters=True,  # values (SECRETs among them) never reach logs
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=4,
        pool_timeout=bound,
    )

    @event.listens_for(engine, "do_connect")
    def bounded_connect(_dialect, _record, cargs, cparams):
        # Returning the connection replaces SQLAlchemy's own psycopg.connect().
        return connect(bound, cargs, cparams)

    return engine

"""Forwarding of stored data to the OpenSenseMap, from the outbox.

The package is cut so that only two modules know sensemapi and HTTP:

* :mod:`.worker` - the :class:`~.worker.OutboxForwarder` loop (rounds, settling
  items, the thread); :mod:`.lease` - the database lease and the backoff;
  :mod:`.process` - fork and exit handling for the process's forwarders;
* :mod:`.plans` - what goes to which box (0.1.2 column conventions, where a box
  is), and :mod:`.errors` - the failures and the one secret scrubber; neither
  imports sensemapi or requests;
* :mod:`.account` - the sensemapi account and its workarounds; :mod:`.client` -
  :class:`~.client.OsemClient`, one plan in, boxes, sensors and measurements out.

Importing this package imports no sensemapi: the worker loads the client on first
use, so a server without the ``opensensemap`` extra starts (and says why it cannot
forward when forwarding is on, see :func:`co2logserver.config_checks.check_osem`).
"""

from __future__ import annotations

import logging
from typing import Any

from co2logserver.store import Store

log = logging.getLogger(__name__)

#: Where :func:`init_app` keeps the process's forwarder in ``app.extensions``.
EXTENSION = "co2logserver.forwarder"


def init_app(app: Any) -> None:
    """Run the forwarder thread in this server process when forwarding is on.

    The thread starts now (so a backlog drains after a restart without any
    request) and again in a forked worker on its first request.
    """
    settings = app.config
    if not (
        settings["CO2LOGSERVER_OSEM_UPLOAD"]
        and settings["CO2LOGSERVER_OSEM_FORWARDER_THREAD"]
    ):
        return
    from co2logserver.forwarding.process import install_process_hooks
    from co2logserver.forwarding.worker import OutboxForwarder
    from co2logserver.store import get_store

    install_process_hooks()
    store = get_store(app)
    prepare_schema(store)
    forwarder = OutboxForwarder(store, settings)
    app.extensions[EXTENSION] = forwarder
    app.before_request(forwarder.ensure_thread)
    forwarder.ensure_thread()


def prepare_schema(store: Store) -> None:
    """Create the tables before the thread starts, never failing the app's start.

    Otherwise the thread's first transaction and the first request both create
    them at once, and on PostgreSQL one of the CREATE TABLEs fails. If the database
    is away (or another worker is creating them), the first use tries again.
    """
    try:
        store.ensure_schema()
    except Exception as error:  # the thread and requests will try again
        log.warning("tables not created at start: %s", type(error).__name__)

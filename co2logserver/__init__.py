"""co2logserver: a data-logging server for environmental sensors.

``create_app()`` builds the Flask app; ``co2logserver.application`` (what
``gunicorn co2logserver`` serves) is built on first access, so importing the package
has no side effects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from co2logserver.version import __version__

__all__ = ["create_app", "__version__"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: configuration, store, error handlers, blueprints.

    :param config: overrides on top of every other configuration source; keys with
        or without the ``CO2LOGSERVER_`` prefix.
    :raise co2logserver.errors.ConfigError: for a configuration that cannot work.
    """
    from co2logserver import applier, forwarding, limits, metrics, retention
    from co2logserver.config import load_config
    from co2logserver.spool import Spool
    from co2logserver.store import Store
    from co2logserver.web import register_blueprints
    from co2logserver.web.errors import register_error_handlers

    app = Flask(__name__)
    load_config(app, config)
    app.logger.setLevel(app.config["CO2LOGSERVER_LOGLEVEL"])
    logging.getLogger("co2logserver").setLevel(app.config["CO2LOGSERVER_LOGLEVEL"])
    # The DefaultJSONProvider Flask makes has it; the base class does not.
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    store = Store(app.config)
    store.spool = Spool.from_settings(app.config, store.url)
    store.init_app(app)
    register_error_handlers(app)
    register_blueprints(app)
    limits.trust_proxies(app)
    limits.init_app(app)
    metrics.init_app(app)
    forwarding.init_app(app)
    retention.init_app(app)
    applier.resume(store, app.config)
    return app


def __getattr__(name: str) -> Any:
    """Build ``application`` lazily for ``gunicorn co2logserver`` (PEP 562)."""
    if name in ("application", "app"):
        from co2logserver.boot import refuse_to_start
        from co2logserver.errors import ConfigError

        try:
            application = create_app()
        except ConfigError as error:
            refuse_to_start(error)
        globals()["application"] = globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

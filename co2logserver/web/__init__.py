"""The HTTP layer: blueprints that parse requests and answer them."""

from __future__ import annotations


def register_blueprints(app) -> None:
    """Register every blueprint on ``app``."""
    from co2logserver.web import dashboard, legacy, openapi, pages, protocols, sensors

    app.register_blueprint(pages.bp)
    app.register_blueprint(legacy.bp)
    app.register_blueprint(sensors.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(openapi.bp)
    for module in protocols.modules():
        app.register_blueprint(module.bp)

"""The HTTP layer: blueprints that parse requests and answer them."""

from __future__ import annotations


def register_blueprints(app) -> None:
    """Register every blueprint on ``app``."""
    from co2logserver.web import (
        accounts,
        archive,
        dashboard,
        legacy,
        openapi,
        owners,
        pages,
        protocols,
        rejections,
        sensors,
    )
    from co2logserver.web import map as sensor_map

    app.register_blueprint(pages.bp)
    app.register_blueprint(legacy.bp)
    app.register_blueprint(sensors.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(openapi.bp)
    for module in protocols.modules():
        app.register_blueprint(module.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(owners.bp)
    app.register_blueprint(sensor_map.bp)
    app.register_blueprint(archive.bp)
    accounts.init_app(app)
    rejections.init_app(app)

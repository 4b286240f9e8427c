"""Blueprint ``openapi``: the HTTP API as an OpenAPI 3.0 document at ``/openapi.json``.

The document is Python dicts in this package, so it ships without data files.
``tests/test_openapi.py`` checks it against ``app.url_map`` (every route
documented, every documented path a route with the same methods), and
``tests/test_schemathesis.py`` fuzzes the live server from it. Error answers share
one schema, ``Error``: the ``{"error": "..."}`` body of every 4xx and 5xx.

The document is assembled here from :mod:`~.core` (the legacy, OpenSmog, read and
operations routes), :mod:`~.owners` (the owners' pages), :mod:`~.archive` (the daily
archive) and each firmware protocol's own ``OPENAPI_PATHS``; :mod:`~.parts` holds
the pieces they share.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from co2logserver.web.openapi.archive import archive_paths
from co2logserver.web.openapi.core import core_document

bp = Blueprint("openapi", __name__)


def document() -> dict[str, Any]:
    """The OpenAPI document of this server's HTTP API, protocols included."""
    served = core_document()
    served["paths"].update(archive_paths())
    served["paths"].update(protocol_paths())
    return served


def protocol_paths() -> dict[str, Any]:
    """The paths the firmware protocols' blueprints document themselves."""
    from co2logserver.web import protocols

    paths: dict[str, Any] = {}
    for module in protocols.modules():
        paths.update(module.OPENAPI_PATHS)
    return paths


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document (JSON)."""
    return document()

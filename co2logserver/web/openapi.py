"""Blueprint ``openapi``: the HTTP API as an OpenAPI 3.0 document at ``/openapi.json``.

The document is a Python dict in this one module, so it ships with the package
without data files. ``tests/test_openapi.py`` checks it against ``app.url_map``
(every route documented, every documented path a route with the same methods), and
``tests/test_schemathesis.py`` fuzzes the live server from it. Error answers share
one schema, ``Error``: the ``{"error": "..."}`` body of every 4xx and 5xx.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from co2logserver.version import __version__

bp = Blueprint("openapi", __name__)

ERROR_REF = {"$ref": "#/components/schemas/Error"}
#: Statuses an ingest route may answer with an error (SPEC §3).
INGEST_ERRORS = ("400", "401", "403", "404", "405", "409", "411", "413", "415")
READ_ERRORS = ("400", "403", "404", "405")
COMMON_ERRORS = ("429", "500", "503")

SUID = {
    "name": "suid",
    "in": "path",
    "required": True,
    "description": "RFC 4122 UUID in canonical 8-4-4-4-12 hex form.",
    "schema": {"type": "string", "format": "uuid"},
}
OBSERVATIONS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "timestamp": {"type": "number", "description": "UNIX seconds, UTC"},
            "age": {"type": "number", "minimum": 0},
            "readings": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "Reading type (CO2, PM2_5, TEMP, ...) to value.",
            },
        },
        "required": ["readings"],
    },
}
LEGACY_COLUMNS = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": {
                "oneOf": [
                    {"type": "array", "items": {}},
                    {"type": "number"},
                    {"type": "string"},
                ]
            },
        },
        {"type": "array", "items": {"type": "object"}},
    ]
}


def query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    """An optional query parameter (a string unless ``schema`` says otherwise)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def responses(success: dict[str, Any], errors: tuple[str, ...]) -> dict[str, Any]:
    """``success`` plus the shared JSON error answer for each status in ``errors``."""
    answers = dict(success)
    for status in (*errors, *COMMON_ERRORS):
        answers[status] = {"$ref": "#/components/responses/Error"}
    return answers


def ok(content_type: str, schema: dict[str, Any] | None = None, text: str = "OK"):
    """A 200 answer of one content type."""
    return {
        "200": {
            "description": text,
            "content": {content_type: {"schema": schema or {}}},
        }
    }


def page(summary: str) -> dict[str, Any]:
    """A GET that answers an HTML page."""
    return {
        "get": {
            "summary": summary,
            "tags": ["pages"],
            "responses": responses(ok("text/html", {"type": "string"}), ("404",)),
        }
    }


#: Error pages of the owners' forms: HTML, not the API's JSON (they are read by
#: people, in the page they posted from).
HTML_ERROR = {"description": "The page again, saying what was wrong (HTML)."}
OWNER_ERRORS = ("400", "401", "403", "404", "429", "502", "503")


def owner_page(summary: str, form: dict[str, Any] | None = None, get: bool = True):
    """An owners' page (``tags: owners``): GET shows it, POST sends its form.

    A form needs its CSRF token (400 without); a page that needs a signed-in owner
    answers 302 to ``/signin``.
    """
    answers = {
        "200": {
            "description": "The page (HTML).",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        "302": {"description": "Done, or sign in first: go to Location."},
        **{status: HTML_ERROR for status in OWNER_ERRORS},
        "500": HTML_ERROR,
    }
    item: dict[str, Any] = {}
    if get:
        item["get"] = {"summary": summary, "tags": ["owners"], "responses": answers}
    if form is not None:
        fields = {"csrf_token": {"type": "string"}, **form}
        item["post"] = {
            "summary": summary + " (form)",
            "tags": ["owners"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": fields}
                    }
                },
            },
            "responses": answers,
        }
    return item


def owner_paths() -> dict[str, Any]:
    """The owners' pages of SPEC §12, and the public map."""
    text = {"type": "string"}
    account = {"username": text, "password": text}
    sensor = owner_page("An owned sensor's settings.", {"action": text})
    for operation in sensor.values():
        operation["parameters"] = [SUID]
    return {
        "/map": page("Map of the sensors with a public location (HTML)."),
        "/signup": owner_page(
            "Create an owner account.", {**account, "invitation": text}
        ),
        "/signin": owner_page("Sign in.", account),
        "/signout": owner_page("Sign out.", {}, get=False),
        "/claim": owner_page("Claim a sensor.", {"suid": text, "code": text}),
        "/my/sensors": owner_page("The owner's sensors and their status."),
        "/my/sensors/{suid}": sensor,
    }


def readings_post(summary: str, security: bool) -> dict[str, Any]:
    """``POST .../readings`` of the verified or the rogue route."""
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["sensors"],
        "parameters": [SUID],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": OBSERVATIONS}},
        },
        "responses": responses(
            {"200": {"description": "Stored (empty body)."}}, INGEST_ERRORS
        ),
    }
    if security:
        operation["security"] = [{}, {"OpenSmogHash": []}]
    return operation


def document() -> dict[str, Any]:
    """The OpenAPI document of this server's HTTP API, protocols included."""
    served = core_document()
    served["paths"].update(protocol_paths())
    return served


def core_document() -> dict[str, Any]:
    """The document of the legacy, OpenSmog, read and operations routes."""
    upload_body = {
        "required": True,
        "content": {
            "application/json": {"schema": LEGACY_COLUMNS},
            "text/csv": {"schema": {"type": "string"}},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "application/msgpack": {"schema": LEGACY_COLUMNS},
            "application/x-msgpack": {"schema": LEGACY_COLUMNS},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "co2logserver",
            "version": __version__,
            "description": "Legacy /upload and /download, the OpenSmog sensor API "
            "(/v1, /rogue/v1), read-back, health and metrics. Every API error is "
            'JSON {"error": "..."}.',
        },
        "paths": {
            "/upload": {
                "post": {
                    "summary": "Store rows of columns (legacy co2logserver protocol).",
                    "tags": ["legacy"],
                    "requestBody": upload_body,
                    "responses": responses(
                        ok(
                            "application/json",
                            {
                                "type": "object",
                                "properties": {"saved-in-db": {"type": "integer"}},
                                "required": ["saved-in-db"],
                            },
                        ),
                        INGEST_ERRORS,
                    ),
                }
            },
            "/download": {
                "get": {
                    "summary": "Read legacy rows as HTML, CSV or JSON.",
                    "tags": ["legacy"],
                    "parameters": [
                        query(
                            "format",
                            "html (default), csv or json",
                            type="string",
                            enum=["html", "csv", "json"],
                        ),
                        query("cols", "comma-separated column names"),
                        query("number", "number of rows (capped)", type="integer"),
                        query("order_by", "<column>,asc|desc"),
                    ],  # fmt: skip
                    "responses": responses(
                        {
                            "200": {
                                "description": "Rows.",
                                "content": {
                                    "text/html": {"schema": {"type": "string"}},
                                    "text/csv": {"schema": {"type": "string"}},
                                    "application/json": {"schema": {}},
                                },
                            }
                        },
                        READ_ERRORS,
                    ),
                }
            },
            "/uploadhelp": page("How to upload (HTML)."),
            "/": page("Dashboard (HTML)."),
            "/index": page("Dashboard (HTML)."),
            "/sensors": page("Sensor list (HTML)."),
            "/sensors/{suid}": {
                "get": {**page("One sensor (HTML).")["get"], "parameters": [SUID]}
            },
            "/health": {
                "get": {
                    "summary": "Process and database round trip.",
                    "tags": ["operations"],
                    "responses": responses(
                        ok("application/json", {"type": "object"}), ()
                    ),
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "tags": ["operations"],
                    "responses": responses(ok("text/plain", {"type": "string"}), ()),
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "tags": ["operations"],
                    "responses": responses(
                        ok("application/json", {"type": "object"}), ()
                    ),
                }
            },
            "/v1/sensors": {
                "get": {
                    "summary": "Sensors with their public location, paged by SUID.",
                    "tags": ["sensors"],
                    "parameters": [
                        query("alias", "a protocol's native device id"),
                        query("cursor", "the next of a previous answer"),
                        query("limit", "page size (default 1000, capped)"),
                    ],
                    "responses": responses(
                        ok("application/json", {"type": "object"}), READ_ERRORS
                    ),
                }
            },
            "/v1/sensors/{suid}": {
                "put": {
                    "summary": "Register a sensor secure; answers its SECRET once.",
                    "tags": ["sensors"],
                    "parameters": [SUID],
                    "security": [{}, {"OpenSmogHash": []}],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "manufacturer": {"type": "string"},
                                        "model": {"type": "string"},
                                        "location": {
                                            "type": "object",
                                            "properties": {
                                                "latitude": {"type": "number"},
                                                "longitude": {"type": "number"},
                                                "elevation": {"type": "number"},
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": responses(
                        ok("text/plain", {"type": "string"}, "The SECRET (64 hex)."),
                        INGEST_ERRORS,
                    ),
                },
                "get": {
                    "summary": "One sensor with its public location.",
                    "tags": ["sensors"],
                    "parameters": [SUID],
                    "responses": responses(
                        ok("application/json", {"type": "object"}), READ_ERRORS
                    ),
                },
            },
            "/v1/sensors/{suid}/readings": {
                "post": readings_post(
                    "Readings of a sensor (verified if signed).", True
                ),
                "get": {
                    "summary": "Readings as JSON pages or CSV; aggregate: buckets.",
                    "tags": ["sensors"],
                    "parameters": [
                        SUID,
                        query("from", "start, UNIX seconds or ISO 8601"),
                        query("to", "end, UNIX seconds or ISO 8601"),
                        query("type", "comma-separated reading types"),
                        query("verified", "true or false"),
                        query("cursor", "next-page cursor from a previous answer"),
                        query("limit", "page size (capped)"),
                        query("aggregate", "bucket width, e.g. 1h"),
                        query(
                            "format",
                            "json (default) or csv",
                            type="string",
                            enum=["json", "csv"],
                        ),
                    ],  # fmt: skip
                    "responses": responses(
                        {
                            "200": {
                                "description": "Readings.",
                                "content": {
                                    "application/json": {"schema": {"type": "object"}},
                                    "text/csv": {"schema": {"type": "string"}},
                                },
                            }
                        },
                        READ_ERRORS,
                    ),
                },
            },
            "/rogue/v1/sensors/{suid}/readings": {
                "post": readings_post("Unverified readings (no authentication).", False)
            },
            **owner_paths(),
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
            "responses": {
                "Error": {
                    "description": "What was wrong and how to fix it.",
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
            },
            "securitySchemes": {
                "OpenSmogHash": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "OpenSmogHash <sha256(body + SECRET)>",
                }
            },
        },
    }


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

"""The OpenAPI document of the legacy, OpenSmog, read and operations routes.

The routes of SPEC §3 to §8 as one dict, with the schemas of their bodies and the
shared ``Error`` component; the owners' pages come from :mod:`~.owners` and the
firmware protocols add their own paths in the package's ``document()``.
"""

from __future__ import annotations

from typing import Any

from co2logserver.version import __version__
from co2logserver.web.openapi.owners import owner_paths
from co2logserver.web.openapi.parts import (
    INGEST_ERRORS,
    READ_ERRORS,
    SUID,
    ok,
    page,
    query,
    responses,
)

ERROR_REF = {"$ref": "#/components/schemas/Error"}
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

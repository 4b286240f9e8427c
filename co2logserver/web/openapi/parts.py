"""Pieces every part of the OpenAPI document uses: answers, parameters, statuses.

One owner for the shape of an answer (the shared JSON ``Error`` response per
status), a query parameter and the SUID path parameter, so the core routes, the
owners' pages and the firmware protocols' blueprints describe them alike.
"""

from __future__ import annotations

from typing import Any

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

"""The daily archive's routes in the OpenAPI document (``/archive/``, #18).

Apart from :mod:`~.core` so that the archive blueprint and its description are
found side by side; the file name pattern is the archive's own
(:data:`co2logserver.archive.NAME`), so the document cannot promise other names.
"""

from __future__ import annotations

from typing import Any

from co2logserver.web.openapi.parts import query, responses

FILE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "day": {"type": "string", "format": "date"},
        "format": {"type": "string", "enum": ["csv.gz", "parquet"]},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "url": {"type": "string"},
    },
}

NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "An archive file, or its checksum file (``.sha256``).",
    "schema": {
        "type": "string",
        "pattern": r"^readings-[0-9]{4}-[0-9]{2}-[0-9]{2}\.(csv\.gz|parquet)"
        r"(\.sha256)?$",
    },
}


def archive_paths() -> dict[str, Any]:
    """``/archive/`` (the list) and ``/archive/{name}`` (one file)."""
    listing = {
        "description": "The archive files, newest first.",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": FILE},
                        "columns": {"type": "array", "items": {"type": "string"}},
                    },
                }
            },
        },
    }
    one_file = {
        "description": "The file, its checksum verified before it is sent.",
        "content": {
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
            "application/vnd.apache.parquet": {
                "schema": {"type": "string", "format": "binary"}
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    }
    return {
        "/archive/": {
            "get": {
                "summary": "The daily archive files of public readings.",
                "tags": ["archive"],
                "parameters": [
                    query(
                        "format",
                        "html (default) or json",
                        type="string",
                        enum=["html", "json"],
                    )
                ],
                "responses": responses({"200": listing}, ("400", "404")),
            }
        },
        "/archive/{name}": {
            "get": {
                "summary": "One daily archive file, or its SHA-256.",
                "tags": ["archive"],
                "parameters": [NAME],
                "responses": responses({"200": one_file}, ("404",)),
            }
        },
    }

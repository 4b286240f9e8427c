"""The request-handling ceiling: a bare Flask app that parses what co2logserver parses.

It answers the same routes with the same status and reply shape, but stores nothing,
checks nothing and signs nothing, so gunicorn + Flask + the parse of the body is all
that is left. co2logserver can at best reach its req/s.
"""

from __future__ import annotations

import csv
import io
import json

from flask import Flask, Response, request


def count_rows(body: bytes, mimetype: str) -> int:
    """Parse a legacy upload as co2logserver would and count its rows."""
    if mimetype == "text/csv":
        return sum(1 for _ in csv.reader(io.StringIO(body.decode()))) - 1
    data = json.loads(body)
    return max(len(v) if isinstance(v, list) else 1 for v in data.values())


def create_app() -> Flask:
    """The ceiling app, served by gunicorn like co2logserver."""
    app = Flask(__name__)

    @app.post("/upload")
    def upload():
        return {"saved-in-db": count_rows(request.get_data(), request.mimetype)}

    @app.post("/v1/sensors/<suid>/readings")
    @app.post("/rogue/v1/sensors/<suid>/readings")
    def readings(suid: str):
        json.loads(request.get_data())
        return Response(b"", status=200)

    return app

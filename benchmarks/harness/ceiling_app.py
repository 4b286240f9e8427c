"""The request-handling ceiling: a bare Flask app that parses what co2logserver parses.

It answers the same routes with the same status and reply shape, but stores nothing,
checks nothing and signs nothing, so gunicorn + Flask + the parse of the body is all
that is left. co2logserver can at best reach its req/s.

``create_app(durable=True)`` is the *durable-Flask* reference of issue 16: the same
app, which also appends each body to a file and fsyncs it before answering — the
least a server that acknowledges only durable data can do per request.
"""

from __future__ import annotations

import csv
import io
import json
import os

from flask import Flask, Response, request


def count_rows(body: bytes, mimetype: str) -> int:
    """Parse a legacy upload as co2logserver would and count its rows."""
    if mimetype == "text/csv":
        return sum(1 for _ in csv.reader(io.StringIO(body.decode()))) - 1
    data = json.loads(body)
    return max(len(v) if isinstance(v, list) else 1 for v in data.values())


class DurableLog:
    """One append-only file per worker process, fsynced after every body."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.pid = 0

    def append(self, body: bytes) -> None:
        if self.fd is None or self.pid != os.getpid():
            self.pid = os.getpid()
            path = f"{os.environ.get('CO2LOGSERVER_DB', 'bench')}.durable-{self.pid}"
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self.fd, len(body).to_bytes(4, "big") + body)
        os.fsync(self.fd)


def create_app(durable: bool = False) -> Flask:
    """The ceiling app, served by gunicorn like co2logserver."""
    app = Flask(__name__)
    log = DurableLog()

    def keep(body: bytes) -> None:
        if durable:
            log.append(body)

    @app.post("/upload")
    def upload():
        body = request.get_data()
        rows = count_rows(body, request.mimetype)
        keep(body)
        return {"saved-in-db": rows}

    @app.post("/v1/sensors/<suid>/readings")
    @app.post("/rogue/v1/sensors/<suid>/readings")
    def readings(suid: str):
        body = request.get_data()
        json.loads(body)
        keep(body)
        return Response(b"", status=200)

    return app

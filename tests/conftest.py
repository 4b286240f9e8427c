"""Shared fixtures: a real SQLite file per test (and a PostgreSQL variant), clients,
and helper actions for the sensor API."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import column, insert, table

from co2logserver import create_app
from co2logserver.store import get_store

pytest_plugins = ["tests.servers", "tests.osem_standin"]

SEED_SALT = "my-super-secret-psk"


@pytest.fixture(autouse=True)
def _reset_environ(monkeypatch) -> Iterator[None]:
    """Tests never see the developer's CO2LOGSERVER_* or SENSEMAP_* variables."""
    for key in list(os.environ):
        if key.startswith(("CO2LOGSERVER_", "SENSEMAP_")):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def db_path(tmp_path) -> str:
    """Path of a fresh SQLite file."""
    return str(tmp_path / "co2.sqlite")


@pytest.fixture
def build_app(tmp_path_factory) -> Iterator:
    """Create apps and close their database connections when the test ends.

    A PostgreSQL app's spool would default to the working directory: each test's
    apps spool into a temporary directory unless the test names one.
    """
    apps = []
    spool = str(tmp_path_factory.mktemp("spool"))

    def factory(config):
        defaults = {"RATELIMIT_ENABLED": False}
        if "://" in str(config.get("DB", config.get("CO2LOGSERVER_DB", ""))):
            defaults["SPOOL_DIR"] = spool
        app = create_app({**defaults, **config})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        sweeper = app.extensions.get("co2logserver.retention")
        if sweeper is not None:  # the retention thread (#18) ends with its test
            sweeper.stop()
        get_store(app).dispose()


@pytest.fixture
def make_app(db_path, build_app):
    """Build an app on the test's SQLite file with extra configuration."""
    return lambda **config: build_app({"DB": db_path, **config})


@pytest.fixture
def app(make_app):
    """An app on a fresh SQLite file, rate limits off."""
    return make_app()


@pytest.fixture
def client(app):
    """Flask test client of ``app``."""
    return app.test_client()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_app(request, db_path, build_app):
    """The same app on SQLite and on a fresh PostgreSQL database."""
    db = db_path
    if request.param == "postgres":
        db = request.getfixturevalue("pg_database_url")
    return lambda **config: build_app({"DB": db, **config})


@pytest.fixture
def runner(app):
    """Flask CLI runner of ``app``."""
    return app.test_cli_runner()


def opensmog_hash(body: bytes, secret: str) -> str:
    """sha256(body + SECRET) as hex."""
    return hashlib.sha256(body + secret.encode()).hexdigest()


def observations(*timestamps: int, **readings: float) -> bytes:
    """A readings payload with the same readings at each timestamp."""
    readings = readings or {"PM10": 12.5, "TEMP": 21.0}
    return json.dumps(
        [{"timestamp": ts, "readings": readings} for ts in timestamps]
    ).encode()


class SensorActions:
    """Register sensors and post readings as a device would."""

    def __init__(self, client):
        self.client = client

    @staticmethod
    def new_suid() -> str:
        """A fresh SUID."""
        return str(uuid.uuid4())

    def register(
        self, suid: str, metadata: dict | None = None, secret: str | None = None
    ) -> str:
        """PUT the sensor (signed with its current ``secret``); return the SECRET."""
        body = json.dumps(metadata or {}).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["Authorization"] = f"OpenSmogHash {opensmog_hash(body, secret)}"
        response = self.client.put(f"/v1/sensors/{suid}", data=body, headers=headers)
        assert response.status_code == 200, response.data
        return response.get_data(as_text=True)

    def post(self, suid: str, body: bytes, secret: str | None = None, **kw):
        """POST readings, signed when a secret is given."""
        headers = kw.pop("headers", {})
        if secret is not None:
            headers["Authorization"] = f"OpenSmogHash {opensmog_hash(body, secret)}"
        return self.client.post(
            f"/v1/sensors/{suid}/readings", data=body, headers=headers, **kw
        )

    def post_rogue(self, suid: str, body: bytes, **kw):
        """POST readings to the rogue route."""
        return self.client.post(f"/rogue/v1/sensors/{suid}/readings", data=body, **kw)


@pytest.fixture
def sensors(client) -> SensorActions:
    """Sensor actions on ``client``."""
    return SensorActions(client)


#: Upload ages for a data table from before the counters: one in the last hour,
#: one in the last day, one older than a day.
OLD_UPLOAD_AGES = (
    datetime.timedelta(minutes=10),
    datetime.timedelta(hours=5),
    datetime.timedelta(days=2),
)


def uploads_from_before_the_counters(store, now: datetime.datetime) -> None:
    """Rows in the data table alone, as 0.1.2 left it: the counters never saw them.

    One row per age of :data:`OLD_UPLOAD_AGES` before ``now``, written as each
    database stores an upload time (SQLite as text, PostgreSQL as a timestamp).
    """
    data = table(store.data.name, column("time_upload_utc"))
    with store._write() as conn:
        store.data.ensure(conn)
        for age in OLD_UPLOAD_AGES:
            moment = now - age
            value = moment.isoformat(sep=" ") if store.dialect == "sqlite" else moment
            conn.execute(insert(data).values(time_upload_utc=value))

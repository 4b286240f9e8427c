"""The spool (SPEC §10): good data is taken while the database is away.

A real PostgreSQL server is stopped and started under the app; what was
acknowledged during the outage must reach the database once, in order, after it is
back — also when the server is SIGKILLed during the outage — and what would have
been a 4xx is refused at once, never spooled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy import create_engine, text

from co2logserver import create_app
from co2logserver.errors import ConfigError
from co2logserver.spool import HEADER, MAGIC
from co2logserver.store import get_store
from tests.appserver import GunicornServer
from tests.conftest import observations

pytestmark = pytest.mark.postgres

TS = 1_700_000_000


def count(url: str, sql: str, **params) -> int:
    """One number from the database, through a fresh connection."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


def wait_for(condition, timeout: float = 30.0) -> float:
    """Poll ``condition`` until true; return the seconds it took (fail at timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s")


def readings_of(url: str, suid: str) -> int:
    return count(
        url,
        "SELECT count(*) FROM readings JOIN registrations r ON r.id = registration_id "
        "WHERE r.suid = :s",
        s=suid,
    )


def sign(body: bytes, secret: str) -> str:
    return "OpenSmogHash " + hashlib.sha256(body + secret.encode()).hexdigest()


def rogue_post(client, suid: str, body: bytes):
    return client.post(f"/rogue/v1/sensors/{suid}/readings", data=body)


def signed_post(client, suid: str, body: bytes, secret: str, **headers):
    headers["Authorization"] = sign(body, secret)
    return client.post(f"/v1/sensors/{suid}/readings", data=body, headers=headers)


@pytest.fixture
def spool_app(postgres_server, build_app, tmp_path):
    """An app on the stoppable PostgreSQL, its spool in a fresh directory."""
    return build_app({"DB": postgres_server.url, "SPOOL_DIR": str(tmp_path / "spool")})


def test_outage_is_bridged_and_applied_once_in_order(
    spool_app, postgres_server, tmp_path
):
    client = spool_app.test_client()
    secure, rogue = str(uuid.uuid4()), str(uuid.uuid4())
    secret = client.put(f"/v1/sensors/{secure}", json={}).get_data(as_text=True)
    first = observations(TS)
    assert signed_post(client, secure, first, secret).status_code == 200
    marker = f"m-{uuid.uuid4().hex}"

    postgres_server.stop()
    during = []
    for n in range(1, 6):
        body = observations(TS + n)
        during.append(signed_post(client, secure, body, secret))
        during.append(rogue_post(client, rogue, body))
        during.append(client.post("/upload", json={"marker": [marker]}))
    assert [r.status_code for r in during] == [200] * 15, [r.data for r in during]
    upload = during[2].get_json()
    assert upload == {"saved-in-db": 1}
    # What would have been a 4xx is one now, and is not spooled.
    bad = observations(TS + 9)
    assert signed_post(client, secure, bad, "0" * 64).status_code == 401
    assert client.post(f"/v1/sensors/{secure}/readings", data=bad).status_code == 403
    assert rogue_post(client, rogue, b"[{}]").status_code == 400
    assert client.post("/upload", json={"Bad Name!": [1]}).status_code == 400
    # A signed post of a sensor this worker never saw cannot be verified: 503.
    unknown = signed_post(client, str(uuid.uuid4()), bad, secret)
    assert unknown.status_code == 503 and unknown.headers["Retry-After"]
    # Registration and reads need the database.
    assert client.put(f"/v1/sensors/{uuid.uuid4()}", json={}).status_code == 503
    assert client.get(f"/v1/sensors/{rogue}/readings").status_code == 503
    health = client.get("/health")
    assert health.status_code == 200, health.data
    assert health.json["status"] == "degraded"
    assert health.json["spool"]["bytes"] > 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "co2logserver_spool_bytes " in metrics
    assert "co2logserver_spool_bytes 0.0" not in metrics

    postgres_server.start()
    url = postgres_server.url
    waited = wait_for(lambda: readings_of(url, rogue) == 5 * 2)
    wait_for(lambda: not list((tmp_path / "spool").glob("*.seg")))
    assert readings_of(url, secure) == 6 * 2
    assert count(url, "SELECT count(*) FROM data WHERE marker = :m", m=marker) == 5
    page = client.get(f"/v1/sensors/{secure}/readings").json["readings"]
    assert all(r["verified"] for r in page)
    assert sorted({r["timestamp"] for r in page}) == [TS + n for n in range(6)]
    assert client.get("/health").json["status"] == "ok"
    assert count(url, "SELECT count(*) FROM spool_applied") == 0
    print(f"backlog applied {waited:.1f} s after PostgreSQL came back")


def test_unapplied_records_survive_sigkill(postgres_server, tmp_path):
    """SIGKILL during the outage; a new server applies what the old one acknowledged."""
    spool = tmp_path / "spool"
    settings = {
        "DB": postgres_server.url,
        "RATELIMIT_ENABLED": "False",
        "SPOOL_DIR": str(spool),
    }
    suid = str(uuid.uuid4())
    server = GunicornServer(tmp_path, settings, workers=2)
    server.start()
    try:
        assert requests.post(
            f"{server.url}/rogue/v1/sensors/{suid}/readings",
            data=observations(TS), timeout=10,
        ).status_code == 200  # fmt: skip
        postgres_server.stop()
        acknowledged = 0
        for n in range(1, 41):
            reply = requests.post(
                f"{server.url}/rogue/v1/sensors/{suid}/readings",
                data=observations(TS + n), timeout=10,
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            acknowledged += 1
        server.crash()  # SIGKILL master and workers
        postgres_server.start()
        server.start()
        url = postgres_server.url
        wait_for(lambda: readings_of(url, suid) == 2 * (1 + acknowledged))
        wait_for(lambda: not list(spool.glob("*.seg")))
        assert readings_of(url, suid) == 2 * (1 + acknowledged)  # none twice
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_torn_tail_is_skipped_with_a_log_line(spool_app, postgres_server, tmp_path):
    client = spool_app.test_client()
    suid = str(uuid.uuid4())
    assert rogue_post(client, suid, observations(TS)).status_code == 200
    postgres_server.stop()
    assert rogue_post(client, suid, observations(TS + 1)).status_code == 200
    # A crash in the middle of the next write: a header and half a body.
    segment = next((tmp_path / "spool").glob("*.seg"))
    with segment.open("ab") as out:
        out.write(HEADER.pack(MAGIC, 100, 0) + b"x" * 40)
    log_before = len(list((tmp_path / "spool").glob("*.seg")))
    postgres_server.start()
    url = postgres_server.url
    wait_for(lambda: readings_of(url, suid) == 4)
    assert log_before == 1


def test_full_spool_answers_503(postgres_server, build_app, tmp_path):
    app = build_app(
        {
            "DB": postgres_server.url,
            "SPOOL_DIR": str(tmp_path / "spool"),
            "SPOOL_MAX_BYTES": 600,
        }
    )
    client = app.test_client()
    suid = str(uuid.uuid4())
    postgres_server.stop()
    statuses = [
        client.post(
            f"/rogue/v1/sensors/{suid}/readings", data=observations(TS + n)
        ).status_code
        for n in range(20)
    ]
    assert statuses[0] == 200
    assert statuses[-1] == 503
    assert statuses == sorted(statuses)  # once full, full until applied
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["spool"]["accepting"] is False
    postgres_server.start()
    accepted = statuses.count(200)
    wait_for(lambda: readings_of(postgres_server.url, suid) == 2 * accepted)


def test_unwritable_spool_directory_stops_the_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as raised:
        create_app(
            {"DB": str(tmp_path / "db.sqlite"), "SPOOL_DIR": str(blocker / "spool")}
        )
    assert "CO2LOGSERVER_SPOOL_DIR" in str(raised.value)
    assert str(blocker) in str(raised.value)


def test_spool_record_holds_no_credential(postgres_server, build_app, tmp_path):
    """A protocol's SECRET in clear is checked, never written into the spool."""
    from co2logserver import applier, devices
    from co2logserver.devices import DeviceReadings, DeviceRequest
    from co2logserver.store import get_store

    app = build_app({"DB": postgres_server.url, "SPOOL_DIR": str(tmp_path / "s")})
    store = get_store(app)
    name = f"airrohr:esp8266-{uuid.uuid4().int % 10**7}:SDS"
    now = int(time.time())
    first = DeviceRequest("airrohr", [DeviceReadings(name, [(now - 5, "PM10", 1.0)])])
    devices.submit_devices(store, app.config, first)
    suid = devices.suid_for(name)
    secret = app.test_client().put(f"/v1/sensors/{suid}", json={}).get_data(True)
    devices.submit_devices(
        store,
        app.config,
        DeviceRequest(
            "airrohr", [DeviceReadings(name, [(now - 4, "PM10", 2.0)])], secret
        ),
    )  # fmt: skip  (the credentials are cached now)
    postgres_server.stop()
    request = DeviceRequest(
        "airrohr", [DeviceReadings(name, [(now, "PM10", 3.0)])], credential=secret
    )
    result = applier.submit(store, app.config, "devices", request=request)
    assert result.stored == 1
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "s").glob("*.seg"))
    assert spooled and secret.encode() not in spooled
    wrong = DeviceRequest(
        "airrohr", [DeviceReadings(name, [(now, "PM10", 3.0)])], credential="f" * 64
    )
    with pytest.raises(Exception) as raised:
        applier.submit(store, app.config, "devices", request=wrong)
    assert getattr(raised.value, "status", None) == 401
    postgres_server.start()
    wait_for(lambda: readings_of(postgres_server.url, suid) == 3)
    page = app.test_client().get(f"/v1/sensors/{suid}/readings").json["readings"]
    assert [(r["value"], r["verified"]) for r in page] == [
        (1.0, False), (2.0, True), (3.0, True)
    ]  # fmt: skip


def test_rejected_when_applied_is_kept_in_the_log(
    spool_app, postgres_server, build_app, tmp_path
):
    """A worker's cache says rogue, but another worker registered the sensor secure.

    The spooled post is refused when applied (403) and kept in ``rejected.log``.
    """
    client = spool_app.test_client()
    suid = str(uuid.uuid4())
    assert rogue_post(client, suid, observations(TS)).status_code == 200
    other = build_app({"DB": postgres_server.url, "SPOOL_MAX_BYTES": 0})
    assert other.test_client().put(f"/v1/sensors/{suid}", json={}).status_code == 200
    postgres_server.stop()
    assert rogue_post(client, suid, observations(TS + 1)).status_code == 200
    postgres_server.start()
    wait_for(lambda: not list((tmp_path / "spool").glob("*.seg")))
    assert readings_of(postgres_server.url, suid) == 2
    rejected = (tmp_path / "spool" / "rejected.log").read_text()
    assert "readings: 403" in rejected


def test_spooled_json_is_byte_identical(spool_app, postgres_server, tmp_path):
    """A gzip body spooled and applied keeps its exact bytes (hash still checks)."""
    import gzip

    client = spool_app.test_client()
    suid = str(uuid.uuid4())
    secret = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    warm = observations(TS)
    assert signed_post(client, suid, warm, secret).status_code == 200
    postgres_server.stop()
    payload = [{"timestamp": TS + 1, "readings": {"CO2": 415}}]
    body = gzip.compress(json.dumps(payload).encode())
    reply = signed_post(client, suid, body, secret, **{"Content-Encoding": "gzip"})
    assert reply.status_code == 200, reply.data
    postgres_server.start()
    wait_for(lambda: readings_of(postgres_server.url, suid) == 3)
    wait_for(lambda: not list(Path(tmp_path / "spool").glob("*.seg")))


def test_reregistration_replaces_the_cached_credentials(spool_app, postgres_server):
    """SPEC §10: a re-registration through this worker invalidates its cache, so
    during an outage the new SECRET signs and the old one is refused."""
    client = spool_app.test_client()
    suid = str(uuid.uuid4())
    old = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    warm = observations(TS)
    assert signed_post(client, suid, warm, old).status_code == 200
    body = b"{}"
    rotate = client.put(
        f"/v1/sensors/{suid}", data=body, headers={"Authorization": sign(body, old)}
    )
    assert rotate.status_code == 200, rotate.data
    new = rotate.get_data(as_text=True)
    postgres_server.stop()
    try:
        stale = observations(TS + 1)
        assert signed_post(client, suid, stale, old).status_code == 401
        fresh = observations(TS + 2)
        assert signed_post(client, suid, fresh, new).status_code == 200
    finally:
        postgres_server.start()
    wait_for(lambda: readings_of(postgres_server.url, suid) == 4)


def test_backlog_follows_the_first_live_write_without_waiting_out_the_backoff(
    spool_app, postgres_server
):
    """After a long outage the applier sleeps up to 5 s between tries; a write that
    reaches the database again wakes it, so the backlog follows at once."""
    client = spool_app.test_client()
    suid = str(uuid.uuid4())
    assert rogue_post(client, suid, observations(TS)).status_code == 200
    postgres_server.stop()
    assert rogue_post(client, suid, observations(TS + 1)).status_code == 200
    time.sleep(7)  # retries after 0.2, 0.4, 0.8, 1.6, 3.2 s: now in a 5 s sleep
    postgres_server.start()
    assert client.post("/upload", json={"live": [1]}).status_code == 200
    waited = wait_for(lambda: readings_of(postgres_server.url, suid) == 4, 10)
    assert waited < 2.5, f"the backlog waited {waited:.1f} s after a live write"


def answer_of_the_next_commit_is_lost(app, committed: bool) -> list[str]:
    """Break the connection of the next COMMIT before its answer arrives.

    With ``committed`` PostgreSQL commits first (it shut down just after); without,
    the connection breaks before COMMIT is sent, so PostgreSQL rolls it back. The
    client sees the same error either way: it cannot tell which happened.
    """
    dialect = get_store(app).engine.dialect
    real_commit = dialect.do_commit
    broken: list[str] = []

    def commit_then_break(dbapi_connection) -> None:
        if broken:
            return real_commit(dbapi_connection)
        if committed:
            real_commit(dbapi_connection)
        broken.append("commit" if committed else "no commit")
        getattr(dbapi_connection, "dbapi_connection", dbapi_connection).close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    dialect.do_commit = commit_then_break
    return broken


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "rolled-back"])
@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "alone"])
def test_an_upload_whose_commit_answer_was_lost_is_stored_once(
    postgres_server, build_app, tmp_path, caplog, committed, group_commit
):
    """Legacy rows have no key that dedup could use: the applier asks PostgreSQL
    whether the lost commit happened (txid_status) before it stores them again."""
    spool = tmp_path / "spool"
    settings = {"DB": postgres_server.url, "SPOOL_DIR": str(spool)}
    app = build_app({**settings, "GROUP_COMMIT": group_commit})
    client = app.test_client()
    assert client.post("/upload", json={"marker": ["warm"]}).status_code == 200
    marker = f"m-{uuid.uuid4().hex}"
    broken = answer_of_the_next_commit_is_lost(app, committed)
    caplog.set_level(logging.INFO, logger="co2logserver.applier")

    reply = client.post("/upload", json={"marker": [marker]})

    assert reply.status_code == 200 and reply.get_json() == {"saved-in-db": 1}
    assert broken == ["commit" if committed else "no commit"]
    wait_for(lambda: not list(spool.glob("*.seg")))
    url = postgres_server.url
    assert count(url, "SELECT count(*) FROM data WHERE marker = :m", m=marker) == 1
    skipped = "was committed before the database went away" in caplog.text
    assert skipped == committed

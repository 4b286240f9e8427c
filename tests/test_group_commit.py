"""Group commit: concurrent ingest requests of a worker share one commit.

Real databases throughout: an SQLite file, the PostgreSQL fixture (stopped for the
outage case) and gunicorn gthread workers over loopback. To put requests into one
batch deterministically the test holds the committer's slot, as a commit in
progress does, while the requests arrive.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import inspect, text

from co2logserver import applier
from co2logserver.errors import ConfigError
from co2logserver.parsers import Batch
from co2logserver.store import get_store
from co2logserver.store.errors import StorageUnavailable
from tests.appserver import GunicornServer
from tests.conftest import observations

TS = 1_700_000_000
#: The value a trigger refuses at insert time (only the database knows it is bad).
POISON = 666.0


def post(app, suid: str, body: bytes):
    """One rogue post through the ingest entry point; its result or its error."""
    try:
        return applier.submit(
            get_store(app), app.config, "readings", suid=suid, body=body,
            authorization=None, rogue_route=True,
        )  # fmt: skip
    except Exception as error:  # the test compares errors too
        return error


def in_one_batch(app, calls: list[Callable[[], object]]) -> list:
    """Run ``calls`` in threads while the slot is held, so they form one batch."""
    group = get_store(app).group
    with group._lock:  # the slot is made per process
        slot = group._slot
    slot.acquire()
    try:
        pool = ThreadPoolExecutor(len(calls))
        futures = [pool.submit(call) for call in calls]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = group._open
            if batch is not None and batch.members == len(calls):
                break
            time.sleep(0.005)
        else:
            raise AssertionError("the requests did not join one batch")
    finally:
        slot.release()
    results = [future.result(timeout=30) for future in futures]
    pool.shutdown()
    return results


def readings_of(app, suid: str) -> int:
    with get_store(app).reading() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM readings JOIN registrations r "
                "ON r.id = registration_id WHERE r.suid = :s"
            ),
            {"s": suid},
        ).scalar_one()


def registered(app, suid: str) -> bool:
    with get_store(app).reading() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM registrations WHERE suid = :s"), {"s": suid}
            ).scalar_one()
        )


def add_poison_trigger(app) -> None:
    """Make the database refuse a reading of :data:`POISON` at insert time."""
    store = get_store(app)
    with store.transaction() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON readings "
                f"WHEN NEW.value = {POISON} BEGIN SELECT RAISE(ABORT, 'poison'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.value = {POISON} THEN RAISE EXCEPTION 'poison'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON readings "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )


def test_a_batch_stores_each_request_once_with_its_own_result(any_db_app):
    app = any_db_app()
    group = get_store(app).group
    suids = [str(uuid.uuid4()) for _ in range(6)]
    body = observations(TS, TS + 60)  # 2 observations x 2 readings
    # Two requests send the same readings (a resend): the second stores nothing.
    calls = [lambda s=s: post(app, s, body) for s in suids] + [
        lambda: post(app, suids[0], body)
    ]
    before = group.commits
    results = in_one_batch(app, calls)
    assert group.commits - before == 1
    assert sorted(results) == [0, 4, 4, 4, 4, 4, 4]
    assert all(readings_of(app, s) == 4 for s in suids)
    # Read-your-writes: a request that follows sees the batch; resending is harmless.
    assert post(app, suids[1], body) == 0
    assert readings_of(app, suids[1]) == 4


def test_a_request_failing_in_the_database_fails_alone(any_db_app):
    app = any_db_app()
    add_poison_trigger(app)
    good = [str(uuid.uuid4()) for _ in range(4)]
    bad = str(uuid.uuid4())
    poisoned = json.dumps(
        [{"timestamp": TS, "readings": {"PM10": 1.0, "TEMP": POISON}}]
    ).encode()
    calls = [lambda s=s: post(app, s, observations(TS)) for s in good[:2]]
    calls.append(lambda: post(app, bad, poisoned))
    calls += [lambda s=s: post(app, s, observations(TS)) for s in good[2:]]
    results = in_one_batch(app, calls)
    assert results[:2] + results[3:] == [2, 2, 2, 2]
    assert isinstance(results[2], Exception)
    assert "poison" in str(results[2])
    assert all(readings_of(app, s) == 2 for s in good)
    # Nothing of the failed request stays: not its PM10, not its rogue registration.
    assert not registered(app, bad)
    # The database learned the same as alone: the next batch still works.
    assert in_one_batch(app, [lambda: post(app, good[0], observations(TS + 1))]) == [2]


def upload(app, columns: dict):
    """One legacy upload of one row through the ingest entry point."""
    batch = Batch({name: [value] for name, value in columns.items()}, 1)
    try:
        return applier.submit(
            get_store(app), app.config, "upload", batch=batch, matches={}
        )
    except Exception as error:
        return error


def data_columns(app) -> set[str]:
    with get_store(app).reading() as conn:
        return {c["name"] for c in inspect(conn).get_columns("data")}


def test_a_failed_upload_takes_only_its_own_new_column_back(make_app):
    """A column added in a rolled-back savepoint is gone, and forgotten."""
    app = make_app()
    assert upload(app, {"station": "s0", "poison": 0}) == 1
    with get_store(app).transaction() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON data WHEN NEW.poison = 666 "
            "BEGIN SELECT RAISE(ABORT, 'poison'); END"
        )
    results = in_one_batch(
        app,
        [
            lambda: upload(app, {"station": "s1", "poison": 1}),
            lambda: upload(app, {"station": "s2", "added_b": 2.5, "poison": 666}),
            lambda: upload(app, {"station": "s3", "poison": 3}),
        ],
    )
    assert results[0] == 1 and results[2] == 1
    assert "poison" in str(results[1])
    assert "added_b" not in data_columns(app)
    # The cache did not keep the rolled-back column: it is added again when used.
    assert upload(app, {"station": "s4", "added_b": 4.5}) == 1
    assert "added_b" in data_columns(app)
    with get_store(app).reading() as conn:
        stations = conn.exec_driver_sql("SELECT station FROM data").scalars().all()
    assert sorted(stations) == ["s0", "s1", "s3", "s4"]


@pytest.mark.postgres
def test_a_connection_lost_inside_a_batch_spools_the_whole_batch(
    pg_database_url, build_app
):
    """The database goes away during one member's block: nobody is half-stored,
    every member is spooled and acknowledged, and each is applied once."""
    app = build_app({"DB": pg_database_url})
    store = get_store(app)
    post(app, str(uuid.uuid4()), observations(TS))  # schema ready
    with store.transaction() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE kill_once")
        conn.exec_driver_sql(
            "CREATE FUNCTION kill_once() RETURNS trigger AS $$ BEGIN "
            "IF NEW.value = 777 AND nextval('kill_once') = 1 THEN "
            "PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER kill_once BEFORE INSERT ON readings "
            "FOR EACH ROW EXECUTE FUNCTION kill_once()"
        )
    suids = [str(uuid.uuid4()) for _ in range(4)]
    killer = json.dumps([{"timestamp": TS, "readings": {"PM10": 777.0}}]).encode()
    calls = [lambda s=s: post(app, s, observations(TS)) for s in suids[:3]]
    calls.append(lambda: post(app, suids[3], killer))
    results = in_one_batch(app, calls)
    assert results == [0, 0, 0, 0], results  # spooled: counted when applied
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store.spool.segments():
        time.sleep(0.1)
    assert [readings_of(app, s) for s in suids] == [2, 2, 2, 1]


def test_many_threads_share_commits(make_app):
    app = make_app()
    group = get_store(app).group
    suids = [str(uuid.uuid4()) for _ in range(48)]
    post(app, str(uuid.uuid4()), observations(TS))  # the schema, outside the count
    before_commits, before_requests = group.commits, group.committed
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda s: post(app, s, observations(TS)), suids))
    assert results == [2] * len(suids)
    assert all(readings_of(app, s) == 2 for s in suids)
    assert group.committed - before_requests == len(suids)
    assert group.commits - before_commits < len(suids)


def test_off_commits_each_request_alone(make_app):
    app = make_app(GROUP_COMMIT=False)
    assert get_store(app).group is None
    suid = str(uuid.uuid4())
    assert post(app, suid, observations(TS)) == 2
    assert post(app, suid, observations(TS)) == 0
    assert readings_of(app, suid) == 2


def test_setting_must_be_a_boolean(make_app):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_GROUP_COMMIT"):
        make_app(GROUP_COMMIT="yes")


@pytest.mark.postgres
def test_database_away_spools_every_request_of_the_batch(
    postgres_server, build_app, tmp_path
):
    app = build_app({"DB": postgres_server.url, "SPOOL_DIR": str(tmp_path / "spool")})
    store = get_store(app)
    post(app, str(uuid.uuid4()), observations(TS))  # schema and pool ready
    suids = [str(uuid.uuid4()) for _ in range(5)]
    group = store.group
    with group._lock:
        slot = group._slot
    slot.acquire()
    pool = ThreadPoolExecutor(len(suids))
    try:
        futures = [pool.submit(post, app, s, observations(TS)) for s in suids]
        while group._open is None or group._open.members < len(suids):
            time.sleep(0.005)
        postgres_server.stop()
    finally:
        slot.release()
    try:
        results = [f.result(timeout=60) for f in futures]
        # Spooled, i.e. acknowledged: a rogue post's new readings count when applied.
        assert results == [0] * len(suids), results
        assert not any(isinstance(r, StorageUnavailable) for r in results)
        assert len(store.spool.segments()) >= 1
    finally:
        postgres_server.start()
        pool.shutdown()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if all(readings_of(app, s) == 2 for s in suids):
                break
        except StorageUnavailable:
            pass
        time.sleep(0.2)
    assert [readings_of(app, s) for s in suids] == [2] * len(suids)


@pytest.mark.parametrize("worker_class", ["gthread", "sync"])
def test_gunicorn_server_over_http(tmp_path, worker_class):
    """gthread threads share commits; sync workers commit each request alone."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = GunicornServer(
        tmp_path,
        {"DB": str(tmp_path / "co2.sqlite"), "RATELIMIT_ENABLED": "False"},
        workers=2,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        extra_args=("--worker-class", worker_class, "--threads", "8")
        if worker_class == "gthread"
        else ("--worker-class", "sync"),
    )
    server.start()
    try:
        suids = [str(uuid.uuid4()) for _ in range(96)]
        local = threading.local()

        def send(suid: str) -> int:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            url = f"{server.url}/rogue/v1/sensors/{suid}/readings"
            answer = local.session.post(url, data=observations(TS), timeout=30)
            return answer.status_code

        with ThreadPoolExecutor(32) as pool:
            assert set(pool.map(send, suids)) == {200}
            assert set(pool.map(send, suids[:16])) == {200}  # resends
        # Each stored once, the resends adding nothing.
        with sqlite3.connect(tmp_path / "co2.sqlite") as db:
            (total,) = db.execute("SELECT count(*) FROM readings").fetchone()
        assert total == 2 * len(suids)
        exposition = requests.get(f"{server.url}/metrics", timeout=10).text
        found = {
            line.split()[0]: float(line.split()[1])
            for line in exposition.splitlines()
            if line.startswith("co2logserver_group_commit_batch_size_")
        }
        commits = found["co2logserver_group_commit_batch_size_count"]
        requests_in = found["co2logserver_group_commit_batch_size_sum"]
        assert requests_in == len(suids) + 16
        if worker_class == "gthread":
            assert commits < requests_in
        else:
            assert commits == requests_in
    finally:
        server.stop()

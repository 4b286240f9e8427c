"""Retention (#18): old raw readings go in short batches, new ones and rollups stay.

Real SQLite files and a real PostgreSQL; readings are posted through the sensor API
where their count matters, and written straight into the store where a test needs
many (the sweep is what is under test, not ingest).
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import column, func, insert, inspect, select, table, text

from co2logserver import create_app, retention
from co2logserver.cli import main
from co2logserver.errors import ConfigError
from co2logserver.store import get_store, outbox
from co2logserver.store import retention as retention_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.schema import readings, sensors
from tests.conftest import SensorActions, observations

DAY = 86400
NOW = int(time.time())
OLD = NOW - 10 * DAY  # past a 7-day retention
NEW = NOW - 2 * DAY


def readings_of(store, suid=None) -> list[tuple[int, int]]:
    """(ts, type) of every stored reading, oldest first."""
    with store.reading() as conn:
        rows = conn.execute(
            select(readings.c.ts, readings.c.type).order_by(readings.c.ts)
        )
        return [tuple(row) for row in rows]


def sensor_row(store, suid):
    with store.reading() as conn:
        return conn.execute(select(sensors).where(sensors.c.suid == suid)).one()


def add_legacy_rows(store, moments) -> None:
    """Legacy data rows uploaded at ``moments`` (aware datetimes)."""
    data = table(store.data.name, column(store.data.upload_time_column))
    sqlite = store.dialect == "sqlite"
    with store.transaction() as conn:
        for moment in moments:
            value = moment.isoformat(sep=" ") if sqlite else moment
            conn.execute(insert(data).values({store.data.upload_time_column: value}))


def legacy_count(store) -> int:
    with store.reading() as conn:
        return conn.scalar(text(f"SELECT count(*) FROM {store.data.name}"))


def seed_readings(store, suid: str, start: int, count: int, step: int = 60) -> None:
    """``count`` times from ``start`` with two readings each, straight into the
    store with the sensor's counts kept as ingest keeps them."""
    with store.reading() as conn:
        registration = conn.scalar(
            select(sensors.c.registration_id).where(sensors.c.suid == suid)
        )
    keys = [(start + i * step, quantity) for i in range(count) for quantity in (1, 2)]
    for first in range(0, len(keys), 20000):
        chunk = keys[first : first + 20000]
        with store.transaction() as conn:
            conn.execute(
                insert(readings),
                [
                    {"registration_id": registration, "ts": ts, "type": q, "value": 1.0}
                    for ts, q in chunk
                ],
            )
            sensor_sql.count_new_readings(conn, suid, chunk)


def registered(client) -> tuple[SensorActions, str, str]:
    actions = SensorActions(client)
    suid = actions.new_suid()
    return actions, suid, actions.register(suid)


def sweep(store, settings, batch_rows=retention.BATCH_ROWS, **stop):
    """Run a whole sweep; return its batches."""
    cut = retention.cutoffs(settings)
    return list(retention.Sweeper(store, cut, batch_rows).batches(**stop))


# ------------------------------------------------------------------ the sweep


def test_old_readings_go_new_stay_in_bounded_batches(any_db_app):
    app = any_db_app(RETENTION_DAYS=7, RETENTION_THREAD=False)
    store = get_store(app)
    actions, suid, secret = registered(app.test_client())
    old = [OLD + i for i in range(20)]
    new = [NEW + i for i in range(5)]
    for times in (old, new):
        response = actions.post(suid, observations(*times), secret)
        assert response.status_code == 200, response.data
    rogue = actions.new_suid()
    assert actions.post_rogue(rogue, observations(OLD, NEW)).status_code == 200
    moment = datetime.datetime.now(datetime.UTC)
    add_legacy_rows(store, [moment - datetime.timedelta(days=9)] * 12 + [moment] * 3)

    batches = sweep(store, app.config, batch_rows=7)

    assert all(batch.deleted <= 7 for batch in batches)
    assert sum(b.deleted for b in batches if b.table == "readings") == 2 * 21
    assert sum(b.deleted for b in batches if b.table == "data") == 12
    assert {ts for ts, _ in readings_of(store)} == {*new, NEW}
    row = sensor_row(store, suid)
    assert (row.reading_count, row.first_ts, row.last_ts) == (10, new[0], new[-1])
    assert sensor_row(store, rogue).reading_count == 2
    assert legacy_count(store) == 3
    # What is left is what the API serves, and a second sweep finds nothing.
    page = app.test_client().get(f"/v1/sensors/{suid}/readings").get_json()
    assert sorted({r["timestamp"] for r in page["readings"]}) == new
    assert sweep(store, app.config) == []


def test_a_sensor_with_no_reading_left_has_no_first_time(app_on_sqlite):
    app = app_on_sqlite
    store = get_store(app)
    actions, suid, secret = registered(app.test_client())
    assert actions.post(suid, observations(OLD), secret).status_code == 200
    sweep(store, app.config)
    row = sensor_row(store, suid)
    assert (row.reading_count, row.first_ts) == (0, None)
    assert readings_of(store) == []


@pytest.fixture
def app_on_sqlite(make_app):
    """Retention on, swept only by the test (no background thread)."""
    return make_app(RETENTION_DAYS=7, RETENTION_THREAD=False)


ROLLUPS_DDL = (
    "CREATE TABLE IF NOT EXISTS rollups_hourly (registration_id BIGINT, "
    "type SMALLINT, hour BIGINT, count BIGINT, min FLOAT, max FLOAT, sum FLOAT, "
    "PRIMARY KEY (registration_id, type, hour))"
)


def add_rollups(store, hours) -> None:
    """Rollup rows of registration 1, types 1 and 2, at each hour start."""
    with store.transaction() as conn:
        conn.exec_driver_sql(ROLLUPS_DDL)
        rows = [
            {"registration_id": 1, "type": q, "hour": hour, "count": 1}
            | {"min": 1.0, "max": 1.0, "sum": 1.0}
            for hour in hours
            for q in (1, 2)
        ]
        conn.execute(insert(rollups_table()), rows)


def rollups_table():
    names = ("registration_id", "type", "hour", "count", "min", "max", "sum")
    return table("rollups_hourly", *map(column, names))


def rollup_hours(store) -> list[int]:
    with store.reading() as conn:
        statement = select(column("hour")).select_from(rollups_table())
        return sorted(set(conn.scalars(statement.distinct())))


def hour_of(ts: int) -> int:
    return ts - ts % 3600


def test_rollups_are_kept_when_raw_readings_go(any_db_app):
    app = any_db_app(RETENTION_DAYS=7)
    store = get_store(app)
    store.ensure_schema()
    hours = [hour_of(NOW - days * DAY) for days in (400, 100, 10, 1)]
    add_rollups(store, hours)
    sweep(store, app.config, batch_rows=3)
    assert rollup_hours(store) == sorted(hours)


def test_rollups_go_after_their_own_retention(any_db_app):
    app = any_db_app(RETENTION_DAYS=7, ROLLUP_RETENTION_DAYS=30)
    store = get_store(app)
    store.ensure_schema()
    old = [hour_of(NOW - 400 * DAY) + i * 3600 for i in range(5)]
    kept = [hour_of(NOW - 20 * DAY), hour_of(NOW - DAY)]
    add_rollups(store, old + kept)
    batches = sweep(store, app.config, batch_rows=3)
    rollup_batches = [b for b in batches if b.table == "rollups"]
    assert sum(b.deleted for b in rollup_batches) == 10
    assert all(b.deleted <= 3 for b in rollup_batches)
    assert rollup_hours(store) == kept


def test_rollup_retention_without_a_rollups_table_is_no_error(make_app):
    app = make_app(RETENTION_DAYS=7, ROLLUP_RETENTION_DAYS=30)
    store = get_store(app)
    store.ensure_schema()
    assert [b for b in sweep(store, app.config) if b.table == "rollups"] == []


def test_a_stopped_sweep_is_resumed_by_the_next(app_on_sqlite):
    app = app_on_sqlite
    store = get_store(app)
    _actions, suid, _secret = registered(app.test_client())
    seed_readings(store, suid, OLD - 1000 * 60, 1000)
    seed_readings(store, suid, NEW, 10)
    first = sweep(store, app.config, batch_rows=100, stop=lambda: True)
    assert [b.deleted for b in first] == [100]
    rest = sweep(store, app.config, batch_rows=100)
    assert sum(b.deleted for b in rest) == 1900
    assert len(readings_of(store)) == 20
    assert sensor_row(store, suid).reading_count == 20


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"RETENTION_DAYS": -1}, "CO2LOGSERVER_RETENTION_DAYS"),
        ({"RETENTION_DAYS": 0}, "CO2LOGSERVER_RETENTION_DAYS"),
        ({"RETENTION_DAYS": 1.5}, "CO2LOGSERVER_RETENTION_DAYS"),
        ({"RETENTION_DAYS": "30"}, "CO2LOGSERVER_RETENTION_DAYS"),
        ({"RETENTION_DAYS": True}, "CO2LOGSERVER_RETENTION_DAYS"),
        (
            {"RETENTION_DAYS": 30, "ROLLUP_RETENTION_DAYS": -5},
            "CO2LOGSERVER_ROLLUP_RETENTION_DAYS",
        ),
        (
            {"RETENTION_DAYS": 30, "ROLLUP_RETENTION_DAYS": 7},
            "CO2LOGSERVER_ROLLUP_RETENTION_DAYS",
        ),
        ({"ROLLUP_RETENTION_DAYS": 365}, "CO2LOGSERVER_ROLLUP_RETENTION_DAYS"),
    ],
)
def test_nonsense_retention_refuses_to_start(db_path, config, key):
    with pytest.raises(ConfigError) as raised:
        create_app({"DB": db_path, **config})
    message = str(raised.value)
    assert key in message and "\n" not in message


def test_sensible_retention_settings_start(make_app):
    app = make_app(RETENTION_DAYS=30, ROLLUP_RETENTION_DAYS=30)
    assert app.config["CO2LOGSERVER_RETENTION_DAYS"] == 30


def test_the_command_line_refuses_nonsense_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    env["CO2LOGSERVER_RETENTION_DAYS"] = "30"
    env["CO2LOGSERVER_ROLLUP_RETENTION_DAYS"] = "7"
    result = subprocess.run(
        [sys.executable, "-m", "co2logserver", "-f", str(tmp_path / "x.sqlite")]
        + ["retention-sweep"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "CO2LOGSERVER_ROLLUP_RETENTION_DAYS" in line


# ------------------------------------------------------------------ the command


def test_retention_sweep_command_deletes_and_resumes(db_path, make_app):
    app = make_app()
    store = get_store(app)
    _actions, suid, _secret = registered(app.test_client())
    seed_readings(store, suid, OLD - 500 * 60, 500)
    seed_readings(store, suid, NEW, 5)
    # An interrupted run: one batch went, the rest is still there.
    interrupted = sweep(
        store, {**app.config, "CO2LOGSERVER_RETENTION_DAYS": 7}, 50, stop=lambda: True
    )
    assert sum(b.deleted for b in interrupted) == 50

    args = ["-f", db_path, "retention-sweep", "--days", "7", "--batch-size", "50"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "retention sweep done: 950 rows deleted" in result.output
    assert "retention: 950 old rows to delete" in result.output  # not a terminal
    assert len(readings_of(store)) == 10
    again = CliRunner().invoke(main, args)
    assert "retention sweep done: 0 rows deleted" in again.output


def test_retention_sweep_command_without_retention_says_what_to_set(db_path):
    result = CliRunner().invoke(main, ["-f", db_path, "retention-sweep"])
    assert result.exit_code == 1
    assert "CO2LOGSERVER_RETENTION_DAYS is not set" in result.output


# ------------------------------------------------------------------ beside ingest


def test_ingest_is_not_held_up_by_a_sweep(any_db_app):
    """A sweep of 60,000 readings runs while a sensor posts: every post answers
    quickly, because each batch holds the writers' turn only briefly."""
    app = any_db_app(RETENTION_DAYS=7, RETENTION_THREAD=False)
    store = get_store(app)
    client = app.test_client()
    actions, suid, secret = registered(client)
    seed_readings(store, suid, OLD - 30000 * 10, 30000, step=10)
    batches: list[retention.Batch] = []
    sweeper = retention.Sweeper(store, retention.cutoffs(app.config))
    worker = threading.Thread(target=lambda: batches.extend(sweeper.batches()))
    latencies = []
    worker.start()
    ts = NOW - 60
    while worker.is_alive() and len(latencies) < 2000:
        started = time.monotonic()
        response = actions.post(suid, observations(ts), secret)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.data
        ts += 1
    worker.join(60)
    assert sum(b.deleted for b in batches) == 60000
    assert len(batches) >= 30 and len(latencies) >= 5
    longest = max(b.seconds for b in batches)
    latencies.sort()
    print(
        f"{store.dialect}: {len(batches)} batches, longest {longest * 1000:.1f} ms; "
        f"{len(latencies)} posts, median {latencies[len(latencies) // 2] * 1000:.1f}"
        f" ms, max {latencies[-1] * 1000:.1f} ms"
    )
    # Generous bounds for a shared CI machine; the figures are in deployment.rst.
    assert longest < 0.5
    assert latencies[-1] < 1.0
    with store.reading() as conn:
        left = conn.scalar(select(func.count()).select_from(readings))
    assert left == 2 * len(latencies)


# ------------------------------------------------------------------ the thread


def test_the_server_sweeps_in_one_process_holding_the_lease(any_db_app):
    first = any_db_app(RETENTION_DAYS=7)
    second = any_db_app(RETENTION_DAYS=7)
    store = get_store(first)
    threads = [app.extensions[retention.EXTENSION] for app in (first, second)]
    for thread in threads:
        thread.interval = 0.1  # sweep (or try the lease) ten times a second
    actions, suid, secret = registered(first.test_client())
    assert actions.post(suid, observations(OLD, NEW), secret).status_code == 200
    second.test_client().get("/health")  # a request starts each app's thread
    try:
        deadline = time.monotonic() + 20
        while sum(t.deleted for t in threads) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {ts for ts, _ in readings_of(store)} == {NEW}
        with store.reading() as conn:
            holder = outbox.lease_holder(conn, retention.LEASE)
        assert holder in {t.lease.holder for t in threads}
        assert sum(t.deleted for t in threads) == 2
    finally:
        for thread in threads:
            thread.stop()
    with store.reading() as conn:
        assert outbox.lease_holder(conn, retention.LEASE) is None


@pytest.mark.parametrize(
    "config", [{}, {"RETENTION_DAYS": 7, "RETENTION_THREAD": False}]
)
def test_no_thread_without_retention_or_with_it_off(make_app, config):
    before = sum(t.name == "co2logserver-retention" for t in threading.enumerate())
    app = make_app(**config)
    app.test_client().get("/health")
    assert retention.EXTENSION not in app.extensions
    after = sum(t.name == "co2logserver-retention" for t in threading.enumerate())
    assert after == before


def test_rollup_cutoff_never_cuts_an_hour_that_covers_kept_readings():
    assert retention_sql.rollup_cutoff(7200 + 1799) == 7200
    assert retention_sql.rollup_cutoff(7200) == 7200


def test_a_0_1_2_database_loses_its_old_rows_and_keeps_its_table(tmp_path, build_app):
    legacy = Path(__file__).parent / "data" / "co2-0.1.2.sqlite"
    db = tmp_path / "co2.sqlite"
    shutil.copy(legacy, db)
    app = build_app({"DB": str(db), "RETENTION_DAYS": 36500, "RETENTION_THREAD": 0})
    store = get_store(app)
    assert sweep(store, app.config) == []  # its rows are younger than 100 years
    assert legacy_count(store) == 5
    # Its rows were uploaded on 2026-11-22; anything a day old goes.
    one_day = {**app.config, "CO2LOGSERVER_RETENTION_DAYS": 1}
    assert [(b.table, b.deleted) for b in sweep(store, one_day)] == [("data", 5)]
    assert legacy_count(store) == 0
    with store.reading() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("data")}
    assert {"co2", "temperature_c", "time_upload_utc"} <= columns


def test_a_renamed_upload_time_column_leaves_the_legacy_table_alone(make_app):
    first = get_store(make_app())
    add_legacy_rows(first, [datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)])
    app = make_app(RETENTION_DAYS=1, RETENTION_THREAD=False, UPLOAD_TIME_COL="x")
    store = get_store(app)
    store.ensure_schema()
    assert sweep(store, app.config) == []
    assert legacy_count(store) == 1

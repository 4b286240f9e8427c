"""Hourly rollups give what aggregating the raw readings gives (issue 18).

Random readings of several sensors and types, resent (dedup drops them) and late
(out of order), on SQLite and PostgreSQL; a database with readings from before the
rollups is built by the CLI, resumably.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time

import pytest
from click.testing import CliRunner

from co2logserver import registration
from co2logserver.cli import main
from co2logserver.store import get_store, history, rollup_build, rollups
from co2logserver.store.selection import ReadingSelection
from tests.conftest import SensorActions

HOUR = 3600
NOW = int(time.time())
#: Whole hours: the first one of the data, 40 hours ago.
T0 = NOW - NOW % HOUR - 40 * HOUR
INTERVALS = (HOUR, 2 * HOUR, 3 * HOUR, 86400)


def encode(observations: list[dict]) -> bytes:
    """A readings payload."""
    return json.dumps(observations).encode()


def random_observations(rng: random.Random, count: int) -> list[dict]:
    """``count`` observations at random seconds of 36 hours from T0, one or two
    types each, values with fractions (sums in floating point)."""
    times = rng.sample(range(T0, T0 + 36 * HOUR), count)
    observations = []
    for ts in times:
        readings = {"PM10": round(rng.uniform(0, 80), 3)}
        if rng.random() < 0.7:
            readings["TEMP"] = round(rng.uniform(-10, 35), 2)
        observations.append({"timestamp": ts, "readings": readings})
    return observations


class Network:
    """Sensors posting random readings, each batch possibly resent or late."""

    def __init__(self, app, seed: int = 18):
        self.app = app
        self.store = get_store(app)
        self.api = SensorActions(app.test_client())
        self.rng = random.Random(seed)
        self.secrets: dict[str, str | None] = {}

    def add_sensor(self, secure: bool) -> str:
        suid = self.api.new_suid()
        self.secrets[suid] = self.api.register(suid) if secure else None
        return suid

    def post(self, suid: str, observations: list[dict]) -> None:
        body = encode(observations)
        secret = self.secrets[suid]
        if secret:
            response = self.api.post(suid, body, secret)
        else:
            response = self.api.post_rogue(suid, body)
        assert response.status_code == 200, response.data

    def fill(self, suid: str, count: int) -> None:
        """Post ``count`` observations in shuffled batches; resend some of them,
        some verbatim and some with other values (both stored once, as first)."""
        observations = random_observations(self.rng, count)
        batches = [observations[i : i + 40] for i in range(0, count, 40)]
        self.rng.shuffle(batches)  # late readings: hours filled out of order
        for batch in batches:
            self.post(suid, batch)
            if self.rng.random() < 0.4:
                self.post(suid, batch)
            if self.rng.random() < 0.3:
                changed = [
                    {"timestamp": o["timestamp"], "readings": {"PM10": -1.0}}
                    for o in batch[:10]
                ]
                self.post(suid, changed)


def normal(rows) -> list[tuple]:
    """Buckets as comparable tuples (drivers return numbers as various types)."""
    return [
        (r.type, int(r.bucket), int(r.count), r.min, float(r.mean), r.max) for r in rows
    ]


def assert_same(raw: list[tuple], rolled: list[tuple]) -> None:
    """Count, min and max equal; the mean up to the order the sums were added in."""
    assert [r[:3] for r in rolled] == [r[:3] for r in raw]
    assert [(r[3], r[5]) for r in rolled] == [(r[3], r[5]) for r in raw]
    for mine, theirs in zip(rolled, raw, strict=True):
        assert mine[4] == pytest.approx(theirs[4], rel=1e-12, abs=1e-12)


def raw_buckets(conn, selection: ReadingSelection, interval: int) -> list[tuple]:
    statement = history.aggregate_readings(selection, interval)
    return normal(conn.execute(statement))


QUERIES = [
    (None, None, None, None),
    (T0 + 5 * HOUR, T0 + 29 * HOUR, None, None),
    (T0, None, (5,), None),
    (None, T0 + 12 * HOUR, None, True),
    (T0 + HOUR, T0 + 30 * HOUR, None, False),
]


def assert_rollups_equal_raw(network: Network) -> int:
    """Every query shape on every sensor: rollups == raw. Returns buckets compared."""
    compared = 0
    with network.store.reading() as conn:
        assert rollups.is_built(conn)
        for suid in network.secrets:
            for interval in INTERVALS:
                for start, end, types, verified in QUERIES:
                    args = (
                        ReadingSelection(suid, start, end, types, verified),
                        interval,
                    )
                    raw = raw_buckets(conn, *args)
                    rolled = history.aggregate_buckets(conn, *args)
                    assert all(isinstance(b, rollups.Bucket) for b in rolled)
                    assert_same(raw, normal(rolled))
                    compared += len(raw)
    return compared


@pytest.fixture
def network(any_db_app) -> Network:
    return Network(any_db_app())


def test_rollups_equal_raw_aggregation_on_random_data(network):
    for secure in (False, True, False):
        network.fill(network.add_sensor(secure), 300)
    assert assert_rollups_equal_raw(network) > 300


def test_every_stored_reading_is_counted_once(network):
    suid = network.add_sensor(False)
    network.fill(suid, 200)
    with network.store.reading() as conn:
        rolled = rollups.aggregate_rollups(conn, ReadingSelection(suid), 86400)
        stored = conn.exec_driver_sql("SELECT count(*) FROM readings").scalar()
    assert sum(b.count for b in rolled) == stored
    # The changed resends stored nothing: no -1.0 reached the rollups.
    assert min(b.min for b in rolled) >= -10


def test_a_new_registration_of_the_same_sensor_is_rolled_up_too(network):
    suid = network.add_sensor(True)
    network.fill(suid, 120)
    assert registration.reset_sensor(network.store, suid)
    network.secrets[suid] = network.api.register(suid)
    network.fill(suid, 120)
    assert_rollups_equal_raw(network)


def test_partial_hours_and_other_buckets_take_the_raw_path(network):
    suid = network.add_sensor(False)
    network.fill(suid, 200)
    cases = [
        (T0 + 1800, None, HOUR),  # from inside an hour
        (None, T0 + 10 * HOUR + 1, HOUR),  # to inside an hour
        (None, None, 900),  # buckets shorter than an hour
        (None, None, 5400),  # an hour and a half
    ]
    with network.store.reading() as conn:
        for start, end, interval in cases:
            assert not rollups.covers(start, end, interval)
            args = (ReadingSelection(suid, start, end), interval)
            rows = history.aggregate_buckets(conn, *args)
            assert not any(isinstance(b, rollups.Bucket) for b in rows)
            assert normal(rows) == raw_buckets(conn, *args)
            # What the rollups would give differs: the partial hour is whole there.
            if interval % HOUR == 0:
                assert normal(rollups.aggregate_rollups(conn, *args)) != normal(rows)


def test_the_api_answers_from_the_rollups_what_the_raw_readings_give(network):
    suid = network.add_sensor(False)
    network.fill(suid, 200)
    body = network.api.client.get(
        f"/v1/sensors/{suid}/readings",
        query_string={"aggregate": "2h", "from": T0, "to": T0 + 24 * HOUR},
    ).get_json()
    with network.store.reading() as conn:
        raw = raw_buckets(conn, ReadingSelection(suid, T0, T0 + 24 * HOUR), 2 * HOUR)
    names = {5: "PM10", 8: "TEMP"}
    got = [
        (b["type"], b["start"], b["count"], b["min"], b["mean"], b["max"])
        for b in body["buckets"]
    ]
    assert len(got) == len(raw) > 0
    for mine, theirs in zip(got, raw, strict=True):
        assert mine[0] == names.get(theirs[0], mine[0])
        assert mine[1:4] == theirs[1:4] and mine[5] == theirs[5]
        assert mine[4] == pytest.approx(theirs[4], rel=1e-12)


def test_hourly_means_for_sparklines(network):
    suids = [network.add_sensor(False) for _ in range(2)]
    for suid in suids:
        network.fill(suid, 100)
    with network.store.reading() as conn:
        means = rollups.hourly_means(conn, suids, 5, T0 + 10 * HOUR)
        for suid in suids:
            selection = ReadingSelection(suid, T0 + 10 * HOUR, None, (5,))
            raw = raw_buckets(conn, selection, HOUR)
            assert [h for h, _ in means[suid]] == [r[1] for r in raw]
            for (_, mean), r in zip(means[suid], raw, strict=True):
                assert mean == pytest.approx(r[4], rel=1e-12)


# ------------------------------------------------------------ databases from before


def forget_rollups(store) -> None:
    """Make the database one from before the rollups: no rollup tables."""
    with store.transaction() as conn:
        conn.exec_driver_sql("DROP TABLE rollups_hourly")
        conn.exec_driver_sql("DROP TABLE rollups_state")


def old_database(any_db_app) -> tuple[Network, str]:
    """A network's database with readings and no rollups; and its URL or path."""
    network = Network(any_db_app())
    for secure in (False, True, False, False):
        network.fill(network.add_sensor(secure), 150)
    forget_rollups(network.store)
    network.store.dispose()
    return network, network.app.config["CO2LOGSERVER_DB"]


def test_an_empty_database_is_built_from_the_start(network):
    with network.store.reading() as conn:
        assert rollups.state(conn) == rollups.State(True, None, None)


def test_readings_from_before_need_the_cli_and_take_the_raw_path_until(
    any_db_app, caplog
):
    old, db = old_database(any_db_app)
    caplog.set_level(logging.WARNING)
    network = Network(any_db_app(DB=db))
    network.secrets = old.secrets
    suid = next(iter(network.secrets))
    with network.store.reading() as conn:
        assert not rollups.is_built(conn)
        rows = history.aggregate_buckets(conn, ReadingSelection(suid), HOUR)
        assert rows and not any(isinstance(b, rollups.Bucket) for b in rows)
    assert "build-rollups" in caplog.text
    network.fill(suid, 60)  # ingest goes on before the build

    result = CliRunner().invoke(main, ["-f", db, "build-rollups"])
    assert result.exit_code == 0, result.output
    assert "rollups built" in result.output
    assert_rollups_equal_raw(network)

    again = CliRunner().invoke(main, ["-f", db, "build-rollups"])
    assert "built already" in again.output


def test_an_interrupted_build_resumes_and_misses_nothing(any_db_app):
    old, db = old_database(any_db_app)
    network = Network(any_db_app(DB=db), seed=7)
    network.secrets = old.secrets
    with network.store.transaction() as conn:
        done, first = rollup_build.build_step(conn, 100)
        assert 100 <= done < 600 and not first.built
    with network.store.transaction() as conn:
        more, second = rollup_build.build_step(conn, 100)
    assert more >= 100 and not second.built
    assert (second.next_registration, second.next_hour) > (
        first.next_registration,
        first.next_hour,
    )
    # Readings keep arriving between the steps, before and after the resume point.
    for suid in network.secrets:
        network.fill(suid, 40)

    result = CliRunner().invoke(main, ["-f", db, "build-rollups", "--chunk", "150"])
    assert result.exit_code == 0, result.output
    resumed = re.search(r"resuming after (\d+) readings", result.output)
    assert resumed and int(resumed[1]) >= done + more
    assert_rollups_equal_raw(network)


def test_restart_builds_everything_again(any_db_app):
    network = Network(any_db_app())
    network.fill(network.add_sensor(False), 150)
    with network.store.transaction() as conn:
        conn.exec_driver_sql("UPDATE rollups_hourly SET count = count + 5")
    db = network.app.config["CO2LOGSERVER_DB"]
    result = CliRunner().invoke(main, ["-f", db, "build-rollups", "--restart"])
    assert result.exit_code == 0, result.output
    assert_rollups_equal_raw(network)


def test_a_30_day_chart_is_whole_hours_and_counts_every_reading(network):
    from co2logserver import dashboard_data

    suid = network.add_sensor(False)
    network.fill(suid, 150)
    span = dashboard_data.time_range({"range": "30d"})
    assert span.interval % HOUR == 0
    data = dashboard_data.chart_data(network.store, suid, span)
    with network.store.reading() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM readings").scalar()
    assert sum(b["count"] for b in data["buckets"]) == stored


def stored_rollups(store) -> list[tuple]:
    """Every hourly rollup row, in key order."""
    with store.reading() as conn:
        result = conn.exec_driver_sql(
            "SELECT registration_id, type, hour, count, min, max, sum"
            " FROM rollups_hourly ORDER BY registration_id, type, hour"
        )
        return [tuple(row) for row in result]


def test_a_rebuild_after_retention_keeps_the_rollups_of_deleted_readings(
    any_db_app,
):
    """Retention deletes raw readings and keeps their rollups; a later
    ``build-rollups --restart`` must not forget (or shrink) those hours."""
    from co2logserver import retention

    app = any_db_app(RETENTION_DAYS=1, RETENTION_THREAD=False)
    network = Network(app)
    network.fill(network.add_sensor(False), 300)
    before = stored_rollups(network.store)
    sweeper = retention.Sweeper(network.store, retention.cutoffs(app.config))
    assert sum(batch.deleted for batch in sweeper.batches()) > 50
    with network.store.reading() as conn:
        horizon = rollup_build.raw_horizon(conn)
    assert T0 < horizon <= int(time.time()) - 86400 + HOUR  # the clock of now
    assert stored_rollups(network.store) == before  # retention keeps rollups

    db = app.config["CO2LOGSERVER_DB"]
    result = CliRunner().invoke(main, ["-f", db, "build-rollups", "--restart"])
    assert result.exit_code == 0, result.output
    after = stored_rollups(network.store)
    assert [row[:6] for row in after] == [row[:6] for row in before]
    assert [row[6] for row in after] == pytest.approx([row[6] for row in before])
    assert any(row[2] < horizon for row in after)

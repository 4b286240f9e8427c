"""The lists at scale (issue #18) on SQLite and PostgreSQL: upload counters instead of a
scan of the data table, ``?alias=`` as an exact key, the sensor list paged in SQL.
"""

from __future__ import annotations

import datetime
import random
import re
import time

import pytest
from sqlalchemy import column, func, insert, select, table, text

from co2logserver import dashboard_data
from co2logserver.store import aliases, counters, get_store
from co2logserver.store import dashboard as dashboard_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.schema import sensor_profiles
from tests.conftest import OLD_UPLOAD_AGES, uploads_from_before_the_counters

NOW = int(time.time())


def stored_rows(store) -> int:
    """The data table's rows, counted the slow way."""
    with store.reading() as conn:
        return conn.execute(
            select(func.count()).select_from(table(store.data.name))
        ).scalar_one()


def cell(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert match, element_id
    return match.group(1).strip()


def test_counters_count_every_stored_row_including_resent_ones(any_db_app):
    app = any_db_app()
    client = app.test_client()
    store = get_store(app)
    body = {"time": [NOW - 60, NOW], "co2": [410, 415]}
    for _ in range(2):  # the same upload twice: the data table keeps both
        assert client.post("/upload", json=body).status_code == 200
    assert (
        client.post("/upload", json={"co2": [1, 2, 3], "x": ["a"] * 3}).status_code
        == 200
    )
    assert client.post("/upload", json={"co2": ["text"]}).status_code == 400
    counts = dashboard_sql.upload_counts(store, datetime.datetime.now(datetime.UTC))
    assert counts["rows"] == stored_rows(store) == 7
    assert (counts["uploads_hour"], counts["uploads_day"]) == (7, 7)
    age = datetime.datetime.now(datetime.UTC) - counts["latest_upload"]
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
    page = client.get("/").get_data(as_text=True)
    assert (cell(page, "row-count"), cell(page, "uploads-hour")) == ("7", "7")


def test_counters_of_an_existing_database_are_filled_once(any_db_app):
    """A data table from before the counters (0.1.2) is counted when they are made."""
    app = any_db_app()
    store = get_store(app)
    now = datetime.datetime.now(datetime.UTC)
    uploads_from_before_the_counters(store, now)
    store.ensure_schema()
    counts = dashboard_sql.upload_counts(store, now)
    assert (counts["rows"], counts["uploads_hour"], counts["uploads_day"]) == (3, 1, 2)
    assert counts["latest_upload"] == pytest.approx(
        now - OLD_UPLOAD_AGES[0], abs=datetime.timedelta(milliseconds=1)
    )
    client = app.test_client()
    assert client.post("/upload", json={"co2": [1, 2]}).status_code == 200
    page = client.get("/").get_data(as_text=True)
    assert (cell(page, "row-count"), cell(page, "uploads-hour")) == ("5", "3")
    assert cell(page, "uploads-day") == "4"
    # A second start does not count them again.
    restarted = any_db_app()
    counts = dashboard_sql.upload_counts(get_store(restarted), now)
    assert counts["rows"] == stored_rows(store) == 5


def test_old_minutes_are_pruned_and_leave_the_day(any_db_app):
    store = get_store(any_db_app())
    store.ensure_schema()
    now = datetime.datetime.now(datetime.UTC)
    with store.transaction() as conn:
        counters.record_upload(conn, 4, now.timestamp() - 3 * 86400)
        counters.record_upload(conn, 2, now.timestamp() - 7200)
        counters.record_upload(conn, 1, now.timestamp())
        minutes = conn.execute(text("SELECT count(*) FROM upload_minutes")).scalar()
        counts = counters.upload_counts(conn, now)
    assert minutes == 2  # the new minute pruned the one of three days ago
    assert (counts["rows"], counts["uploads_hour"], counts["uploads_day"]) == (7, 1, 3)


def add_sensor(conn, suid, alias=None, model=None, last_ts=None, location=None):
    """A sensor row through the store's own functions."""
    registration = sensor_sql.new_registration(conn, suid, False, None, NOW)
    metadata = {"model": model}
    if location:
        metadata.update(latitude=location[0], longitude=location[1])
    sensor_sql.save_sensor(conn, suid, registration, False, metadata, NOW, False)
    if alias is not None:
        sensor_sql.describe_device(conn, suid, None, alias, None, NOW)
    if last_ts is not None:
        keys = sensor_sql.insert_readings(conn, registration, [(last_ts, 6, 1.0)])
        sensor_sql.count_new_readings(conn, suid, keys)
    return registration


def like_reference(alias: str, lookup: str) -> bool:
    """What the former ``LIKE`` conditions found (the lookup's contract)."""
    a, q = alias.lower(), lookup.lower()
    return a == q or a.endswith(":" + q) or f":{q}:" in a or a.startswith(q + ":")


def suid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_alias_lookup_is_exact_and_finds_what_like_found(any_db_app):
    app = any_db_app()
    store = get_store(app)
    rng = random.Random(18)
    parts = ["airrohr", "esp8266-4", "esp8266-42", "SDS", "bme280", "a_b", "x%"]
    names = {
        ":".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(60)
    }
    names = sorted(names)
    with store.transaction() as conn:
        for n, name in enumerate(names):
            add_sensor(conn, suid(n), alias=name)
    by_suid = {suid(n): name for n, name in enumerate(names)}
    lookups = [*parts, "esp8266", "ESP8266-42:sds", "a%b", "a_b:x%", "x_", "%", "_"]
    lookups += rng.sample(names, 10)
    client = app.test_client()
    for lookup in lookups:
        answer = client.get("/v1/sensors", query_string={"alias": lookup})
        found = [s["suid"] for s in answer.json["sensors"]]
        expected = sorted(s for s, a in by_suid.items() if like_reference(a, lookup))
        assert found == expected, lookup
    # Paged with a cursor, the lookup still gives each sensor once.
    pages, cursor = [], None
    while True:
        args = {"alias": "sds", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/sensors", query_string=args).json
        pages += [s["suid"] for s in page["sensors"]]
        if "next" not in page:
            break
        cursor = page["next"]
    assert pages == sorted(s for s, a in by_suid.items() if like_reference(a, "sds"))


def test_a_changed_alias_replaces_its_keys(any_db_app):
    store = get_store(any_db_app())
    with store.transaction() as conn:
        add_sensor(conn, suid(1), alias="influx:old:one")
        row = sensor_sql.get_sensor(conn, suid(1))
        sensor_sql.describe_device(conn, suid(1), row, "influx:new", None, NOW)
    with store.reading() as conn:
        assert [r.suid for r in sensor_sql.list_sensors(conn, "old")] == []
        assert [r.suid for r in sensor_sql.list_sensors(conn, "NEW")] == [suid(1)]
        keys = set(conn.scalars(select(aliases.alias_keys.c.key)))
    assert keys == {"influx", "new", "influx:new"}


def test_aliases_of_an_existing_database_are_keyed_once(any_db_app):
    app = any_db_app()
    store = get_store(app)
    with store.transaction() as conn:
        add_sensor(conn, suid(1), alias="airrohr:esp8266-7:SDS")
        add_sensor(conn, suid(2), alias="lorawan:a81758fffe0312b4")
        add_sensor(conn, suid(3))
    with store._write() as conn:  # a database from before the key table
        conn.execute(text("DROP TABLE alias_keys"))
    restarted = any_db_app()
    client = restarted.test_client()
    found = client.get("/v1/sensors?alias=esp8266-7").json["sensors"]
    assert [s["suid"] for s in found] == [suid(1)]
    found = client.get("/v1/sensors?alias=a81758fffe0312b4").json["sensors"]
    assert [s["suid"] for s in found] == [suid(2)]


def page_suids(client, **args) -> tuple[list[str], str]:
    answer = client.get("/sensors", query_string=args)
    assert answer.status_code == 200, answer.data[:300]
    page = answer.get_data(as_text=True)
    return re.findall(r'data-suid="([^"]+)"', page), page


@pytest.fixture
def many(any_db_app):
    """120 sensors: ties in last reading and model, some without any, one hidden."""
    app = any_db_app()
    store = get_store(app)
    rng = random.Random(7)
    with store.transaction() as conn:
        for n in range(120):
            add_sensor(
                conn,
                suid(n),
                alias=f"airrohr:esp8266-{n}:SDS" if n % 3 == 0 else None,
                model=rng.choice(["AQ-1", "AQ-2", None]),
                last_ts=rng.choice(
                    [None, NOW - 10, NOW - 5000, NOW - rng.randint(0, 9999)]
                ),
                location=(48.5 + rng.randint(0, 3) / 100, 9.05) if n % 2 else None,
            )
        conn.execute(
            insert(sensor_profiles).values(
                suid=suid(1), location_public=False, updated_at=NOW
            )
        )
    return app


@pytest.mark.parametrize("sort", dashboard_data.SORT_KEYS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_covers_every_sensor_exactly_once(many, sort, order):
    client = many.test_client()
    seen, page_number = [], 1
    while True:
        suids, page = page_suids(client, sort=sort, order=order, page=page_number)
        assert len(suids) <= dashboard_data.SENSORS_PER_PAGE
        assert cell(page, "sensor-total") == "120"
        if page_number < 3:
            assert 'rel="next"' in page
        if page_number > 1:
            assert 'rel="prev"' in page
        seen += suids
        if 'rel="next"' not in page:
            break
        page_number += 1
    assert page_number == 3
    assert sorted(seen) == [suid(n) for n in range(120)]
    assert len(set(seen)) == 120
    if sort in ("last_reading", "reading_count", "model"):
        views = {v["suid"]: v for v in all_views(many)}
        values = [views[s][sort] for s in seen]
        present = [v for v in values if v is not None]
        assert present == sorted(present, reverse=order == "desc")
        assert values == present + [None] * (len(values) - len(present))
    if sort == "location":
        # The hidden location sorts as missing: its place says nothing of it.
        assert seen.index(suid(1)) >= len([n for n in range(120) if n % 2]) - 1


def all_views(app):
    store = get_store(app)
    with store.reading() as conn:
        rows = sensor_sql.list_sensors(conn)
    return [dashboard_data.readback.sensor_view(r, 2) for r in rows]


def test_a_page_beyond_the_last_and_bad_pages(many):
    client = many.test_client()
    suids, page = page_suids(client, page=99)
    assert suids == [] and "No sensor on this page" in page
    for bad in ("0", "-1", "x", "1.5"):
        answer = client.get(f"/sensors?page={bad}")
        assert answer.status_code == 400
        assert "page must be" in answer.get_json()["error"]
    assert client.get("/sensors?q=" + "x" * 201).status_code == 400


def test_search_by_suid_alias_and_model(many):
    client = many.test_client()
    suids, page = page_suids(client, q="esp8266-9")
    assert suids == [suid(9)]
    assert cell(page, "sensor-total") == "1"
    suids, _ = page_suids(client, q=suid(11)[:-1])  # a SUID prefix: 10 to 19
    assert sorted(suids) == [suid(n) for n in range(10, 20)]
    views = all_views(many)
    aq1 = sorted(v["suid"] for v in views if v["model"] == "AQ-1")
    seen, number = [], 1
    while True:
        suids, page = page_suids(
            client, q="aq-1", page=number, sort="suid", order="asc"
        )
        seen += suids
        if 'rel="next"' not in page:
            break
        number += 1
    assert seen == aq1
    assert page_suids(client, q="%")[0] == []


def test_sparkline_shows_the_preferred_type_of_a_busy_sensor(any_db_app):
    """30 points of PM2_5 among five types per post, from two bounded statements."""
    app = any_db_app()
    store = get_store(app)
    with store.transaction() as conn:
        registration = add_sensor(conn, suid(5))
        rows = [
            (NOW - 60 * i, code, float(i))
            for i in range(100)
            for code in (5, 6, 8, 9, 10)  # PM10, PM2_5, TEMP, HUM, PRES
        ]
        keys = sensor_sql.insert_readings(conn, registration, rows)
        sensor_sql.count_new_readings(conn, suid(5), keys)
    with store.reading() as conn:
        lines = dashboard_data.sparklines(conn, [registration])
    name, values = lines[registration]
    expected = dashboard_data.QUANTITIES["PM2_5"].code
    assert name == dashboard_data.BY_CODE[expected].name
    assert values == [float(i) for i in range(29, -1, -1)]


def test_alias_lookup_plan_reads_no_sensor_it_does_not_return(app):
    """On SQLite: the key table's primary key, then sensors by SUID; no scan."""
    store = get_store(app)
    with store.transaction() as conn:
        for n in range(50):
            add_sensor(conn, suid(n), alias=f"airrohr:esp8266-{n}:SDS")
    with store.reading() as conn:
        captured = []
        conn.connection.driver_connection.set_trace_callback(captured.append)
        try:
            sensor_sql.list_sensors(conn, "esp8266-7", None, 10)
        finally:
            conn.connection.driver_connection.set_trace_callback(None)
        [sql] = [s for s in captured if "alias_keys" in s]
        plan = " | ".join(
            row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
        )
    assert "alias_keys" in plan and "SCAN sensors" not in plan, plan
    assert "SCAN alias_keys" not in plan, plan


def test_retention_takes_deleted_rows_off_the_counters(any_db_app):
    """Rows a retention sweep deletes leave the dashboard's total too."""
    from co2logserver import retention

    app = any_db_app(RETENTION_DAYS=7, RETENTION_THREAD=False)
    client = app.test_client()
    store = get_store(app)
    for values in ([410, 415, 420], [430, 435]):
        assert client.post("/upload", json={"co2": values}).status_code == 200
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    moment = old.isoformat(sep=" ") if store.dialect == "sqlite" else old
    upload = column(store.data.upload_time_column)
    data = table(store.data.name, upload, column("co2"))
    with store.transaction() as conn:  # the first upload, a month ago
        conn.execute(data.update().where(column("co2") < 425).values({upload: moment}))
    sweeper = retention.Sweeper(store, retention.cutoffs(app.config), batch_rows=2)
    assert sum(batch.deleted for batch in sweeper.batches()) == 3
    counts = dashboard_sql.upload_counts(store, datetime.datetime.now(datetime.UTC))
    assert counts["rows"] == stored_rows(store) == 2
    page = client.get("/").get_data(as_text=True)
    assert cell(page, "row-count") == "2"

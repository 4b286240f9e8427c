"""Our line-protocol parser against a real InfluxDB 1.x, the oracle (issue #15).

The same bodies go to a private ``influxd`` (Debian's ``influxdb`` package, see
:mod:`tests.influx_server`) and to :func:`co2logserver.protocols.lineprotocol.parse`:
escapes, quoted strings, integers, booleans, comments, each precision, scientific
floats, unicode. Series (measurement and tags), field values and timestamps must
come out the same. Every line ``influxd`` refuses must be refused here too; the few
lines we refuse although 1.x takes them, and the ``u`` integers 1.x refuses, are
listed with the reason (docs/protocols/influxdb.rst says the same).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from co2logserver.errors import BadRequest
from co2logserver.protocols.influx import quantity_name
from co2logserver.protocols.lineprotocol import PRECISIONS, escaped_key, parse
from tests.influx_server import running_influxdb
from tests.test_lineprotocol import INVALID

T = 1465839830  # the docs' example time, in seconds

#: (what the case covers, body, precision or None)
CASES = [
    ("the docs' example",
     "weather,location=us-midwest temperature=82 1465839830100400200", None),
    ("tags, fields, several lines",
     "weather,location=us-midwest,season=summer temperature=82,bug_concentration=98 "
     f"{T}000000000\nweather,location=us-east temperature=75 {T}000000001\n", None),
    ("measurement escapes",
     f"wea\\,ther f=1 {T}0\nwea\\ ther f=2 {T}1\nwea\\=ther f=3 {T}2\n"
     f'wea\\"ther f=4 {T}3\nwea\\\\ther f=5 {T}4\n"weather" f=6 {T}5\n', "n"),
    ("tag escapes",
     f"m,location=us\\,midwest f=1 {T}0\nm,location\\ place=a\\ b f=2 {T}1\n"
     f'm,k\\=1=v\\=2 f=3 {T}2\nm,q\\"k=v\\"x,t="quoted" f=4 {T}3\n', "n"),
    ("field key escapes",
     f'm temp\\=rature=1,b\\,c=2,d\\ e=3,f\\"g=4,h\\\\i=5 {T}', "s"),
    ("quoted strings",
     f's a="too\\"hot\\"",b="hot\\\\cold",c="hot\\cold",d="x,y z=1",e="",'
     f'f="caf\u00e9 \u2603",g="a\\nb" {T}', "s"),
    ("a string holding a newline", f's2 s="two\nlines",n=1 {T}\ns2 n=2 {T + 1}', "s"),
    ("integers",
     f"i a=1i,b=-1i,c=0i,d=9223372036854775807i,e=-9223372036854775808i {T}", "s"),
    ("booleans",
     f"b a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE {T}", "s"),
    ("floats and exponents",
     f"f a=1e3,b=1E-3,c=-1.5e+3,d=.5,e=1.,f=01,g=-0,h=123456789.123456789,"
     f"i=1.7976931348623157e308,j=5e-324,k=-.25 {T}", "s"),
    ("comments, blank lines, blanks",
     f"# a comment\n\n   # indented\n  c f=1 {T}\n\t\n"
     f"c  f=2   {T + 1}  \nc f=3 {T + 2}\n", "s"),
    ("unicode", f"温度,地点=東京 値=21.5 {T}\n😀,k=ü f=1 {T + 1}", "s"),
    ("unsorted tags, one series", f"u,b=2,a=1 f=1 {T}\nu,a=1,b=2 f=2 {T + 1}", "s"),
    ("a field twice: the last stands", f"d f=1,g=2,f=3 {T}", "s"),
    ("tab inside a measurement", f"tab\tname f=1 {T}", "s"),
    ("a negative timestamp", "neg f=1 -5", "s"),
    ("Tasmota, no timestamps",
     "temperature,device=tasmota,sensor=htu21 value=28.23\n"
     "humidity,device=tasmota,sensor=htu21 value=39.7", None),
    ("airrohr",
     "feinstaub,node=esp8266-1234567 SDS_P1=12.40,SDS_P2=8.10,"
     'BME280_pressure=101325.00,GPS_date="12/02/2026",signal=-66\n', None),
] + [
    (f"precision {p}", f"p{p},unit={p} value=1 {stamp}\np{p},unit={p} value=2 3", p)
    for p, stamp in (("n", T * 10**9 + 7), ("u", T * 10**6 + 7), ("ms", T * 1000 + 7),
                     ("s", T), ("m", T // 60), ("h", T // 3600))
]  # fmt: skip

#: Lines we refuse that influxd 1.6 stores, and why (the stricter side is ours).
STRICTER = {
    'weather f="a"x': "text after a closing quote; influxd keeps a mangled string",
}
#: Bodies influxd 1.x refuses that we store, on purpose.
OURS_ONLY = [
    ("m f=1u 1", "unsigned integers: InfluxDB 2 takes them, 1.x has them disabled"),
]


@pytest.fixture(scope="module")
def influxdb():
    """One private influxd for the module."""
    with running_influxdb() as server:
        yield server


_databases = itertools.count()


def fresh_database(influxdb) -> str:
    name = f"case{next(_databases)}"
    influxdb.query(f'CREATE DATABASE "{name}"')
    return name


def quoted(identifier: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + identifier.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stored_points(influxdb, db: str) -> Counter:
    """``(measurement, tags, time ns, fields)`` of everything in ``db``."""
    found: Counter = Counter()
    answer = influxdb.query("SHOW MEASUREMENTS", db=db)["results"][0]
    names = [row[0] for row in answer.get("series", [{"values": []}])[0]["values"]]
    for name in names:
        result = influxdb.query(
            f"SELECT * FROM {quoted(name)} GROUP BY *", db=db, epoch="ns"
        )["results"][0]
        for series in result["series"]:
            tags = tuple(
                sorted((k, v) for k, v in series.get("tags", {}).items() if v != "")
            )
            columns = series["columns"]
            for row in series["values"]:
                fields = frozenset(
                    (column, value)
                    for column, value in zip(columns[1:], row[1:], strict=True)
                    if value is not None
                )
                found[(name, tags, row[0], fields)] += 1
    return found


def parsed_points(body: str, precision: str | None) -> Counter:
    """The same, from our parser (time ``None`` where the line gives none)."""
    found: Counter = Counter()
    for point in parse(body, precision or "n"):
        ts = point.timestamp
        stamp = None if ts is None else ts * PRECISIONS[precision or "n"]
        found[(point.measurement, point.tags, stamp, frozenset(point.fields))] += 1
    return found


def without_times(points: Counter) -> Counter:
    return Counter({(m, t, None, f): n for (m, t, _, f), n in points.items()})


@pytest.mark.parametrize(
    ("label", "body", "precision"), CASES, ids=[c[0] for c in CASES]
)
def test_same_series_fields_and_times_as_influxdb(influxdb, label, body, precision):
    db = fresh_database(influxdb)
    before = time.time_ns()
    answer = influxdb.write(db, body.encode(), precision)
    assert answer.status_code == 204, (label, answer.text)
    theirs = stored_points(influxdb, db)
    ours = parsed_points(body, precision)
    assert sum(ours.values()) == sum(theirs.values()) > 0
    if any(key[2] is None for key in ours):
        # No timestamp: influxd stamps its receive time, we ours (both "now").
        assert all(before - 10**9 <= key[2] <= time.time_ns() for key in theirs)
        theirs, ours = without_times(theirs), without_times(ours)
    assert ours == theirs


@pytest.mark.parametrize(("line", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_what_influxdb_refuses_is_refused_here(influxdb, line, reason):
    db = fresh_database(influxdb)
    with pytest.raises(BadRequest):
        parse(line)
    answer = influxdb.write(db, line.encode())
    if line in STRICTER:
        assert answer.status_code == 204, answer.text
    else:
        assert answer.status_code == 400, (line, answer.text)
        assert "unable to parse" in answer.json()["error"] or "error" in answer.json()


@pytest.mark.parametrize(
    ("line", "precision"),
    [
        ("m f=1 1465839830", "m"),
        ("m f=1 1465839830", "h"),
        ("m f=1 9223372036854775", "ms"),
    ],
)
def test_times_beyond_influxdb_range_are_refused_by_both(influxdb, line, precision):
    db = fresh_database(influxdb)
    assert influxdb.write(db, line.encode(), precision).status_code == 400
    with pytest.raises(BadRequest, match="line 1: time"):
        parse(line, precision)


@pytest.mark.parametrize(("body", "reason"), OURS_ONLY)
def test_documented_extensions_over_influxdb_1(influxdb, body, reason):
    db = fresh_database(influxdb)
    assert influxdb.write(db, body.encode()).status_code == 400, reason
    assert parse(body)


#: Bodies also written through ``/write`` end to end: their series keys are in
#: InfluxDB's canonical escaping, so the sensors' names must be InfluxDB's keys.
END_TO_END = [
    ("the docs' example",
     "weather,location=us-midwest temperature=82,bug_concentration=98i 1465839830\n"
     "weather,location=us-east,season=summer temperature=75.5 1465839831", "s"),
    ("escaped names",
     f"wea\\,ther,location=us\\,midwest f=1 {T}\nwea\\ ther,k\\=1=v\\=2 f=2 {T}\n"
     f"m,location\\ place=a\\ b temp\\=rature=3,n=4i {T}", "s"),
    ("unicode and unsorted tags", f"温度,地点=東京,a=1 値=21.5 {T}", "s"),
    ("nanoseconds", f"p,u=ns value=1 {T}123456789", None),
    ("microseconds", f"p,u=u value=1 {T}123456", "u"),
    ("milliseconds", f"p,u=ms value=1 {T}123", "ms"),
    ("minutes", f"p,u=m value=2 {T // 60}", "m"),
    ("hours", f"p,u=h value=2 {T // 3600}", "h"),
    ("strings and booleans left out", f's,k=v a="x",b=t,c=1.5e3 {T}', "s"),
]  # fmt: skip


def influx_readings(influxdb, db: str) -> tuple[set[str], set[tuple]]:
    """InfluxDB's series keys, and ``(key, second, field, value)`` of its numbers."""
    keys = {
        row[0]
        for row in influxdb.query("SHOW SERIES", db=db)["results"][0]["series"][0][
            "values"
        ]
    }
    found = set()
    for (name, tags, ns, fields), _ in stored_points(influxdb, db).items():
        key = escaped_key(name, tags)
        for field, value in fields:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.add(
                    (key, ns // 10**9, name if field == "value" else field, value)
                )
    return keys, found


@pytest.mark.parametrize(
    ("label", "body", "precision"), END_TO_END, ids=[c[0] for c in END_TO_END]
)
def test_sensors_are_influxdb_series_with_its_values(
    influxdb, make_app, label, body, precision
):
    db = fresh_database(influxdb)
    assert influxdb.write(db, body.encode(), precision).status_code == 204
    keys, expected = influx_readings(influxdb, db)
    client = make_app().test_client()
    query = f"&precision={precision}" if precision else ""
    assert client.post(f"/write?db=x{query}", data=body.encode()).status_code == 204
    sensors = client.get("/v1/sensors").json["sensors"]
    assert {s["alias"] for s in sensors} == {f"influx:{key}" for key in keys}
    stored = set()
    for sensor in sensors:
        answer = client.get(f"/v1/sensors/{sensor['suid']}/readings").json
        for r in answer["readings"]:
            stored.add(
                (
                    sensor["alias"][len("influx:") :],
                    r["timestamp"],
                    r["type"],
                    r["value"],
                )
            )
    assert stored == {
        (key, ts, quantity_name(field), value) for key, ts, field, value in expected
    }

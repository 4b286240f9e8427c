"""Protocol bodies the OpenAPI schema cannot express, generated near the valid ones.

Schemathesis (``tests/test_schemathesis.py``) sends what the schema describes; most
of what it makes up is refused at the first check. These strategies build what
sensors really send, a little wrong: observation arrays with a bad timestamp, an
unknown or empty reading name, a value too large for any column, next to good
observations; CSV with repeated, missing or invalid columns and ragged rows; JSON
and msgpack column maps with mixed kinds; signed with the right SECRET, so the
checks behind authentication are reached. Asserted on SQLite and PostgreSQL: never
a 5xx, every error is JSON ``{"error": str}``, and a refused body stores nothing
(every table's row count, counted on a connection of the test's own, is unchanged).

``derandomize`` fixes the examples in CI; ``CO2LOGSERVER_FUZZ_EXAMPLES=2000`` runs a
longer, still reproducible search.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import uuid

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from co2logserver import create_app
from co2logserver.readings import QUANTITIES
from co2logserver.store import get_store
from tests.conftest import opensmog_hash
from tests.servers import create_database, drop_database, replace_database
from tests.stored import row_counts

EXAMPLES = int(os.environ.get("CO2LOGSERVER_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = 1_750_000_000

#: Numbers at and beyond what columns hold: int64, 2**53 in a float, 1e308.
edge_numbers = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**400, 1e308, -1e13, 1e40]
)
numbers = (
    st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | edge_numbers
)
#: Text a device may garble: empty, NUL, lone surrogates, very long.
odd_text = st.sampled_from(["", " ", "\x00", "\ud800", "x" * 300, "co2", "1e5", "nan"])
values = numbers | odd_text | st.none() | st.booleans() | st.just([1]) | st.just({})
reading_names = st.sampled_from(sorted(QUANTITIES)) | odd_text
timestamps = st.integers(min_value=NOW - 10**6, max_value=NOW) | st.sampled_from(
    [-1, 0, NOW + 10**6, 10**20, 1.5e9, "1750000000", None, True]
)


@st.composite
def observation(draw) -> dict:
    """One observation, valid or a little wrong."""
    item: dict = {}
    when = draw(st.sampled_from(["timestamp", "age", "both", "neither"]))
    if when in ("timestamp", "both"):
        item["timestamp"] = draw(timestamps)
    if when in ("age", "both"):
        item["age"] = draw(st.integers(min_value=-5, max_value=10**6) | odd_text)
    item["readings"] = draw(
        st.dictionaries(reading_names, numbers, max_size=4)
        | st.dictionaries(reading_names, values, max_size=3)
        | st.sampled_from([{}, [], None, "CO2"])
    )
    if draw(st.booleans()):
        item[draw(odd_text)] = draw(values)
    return item


good_observation = st.fixed_dictionaries(
    {
        "timestamp": st.integers(min_value=NOW - 10**6, max_value=NOW),
        "readings": st.dictionaries(
            st.sampled_from(sorted(QUANTITIES)),
            st.integers(min_value=-1000, max_value=1000),
            min_size=1,
            max_size=3,
        ),
    }
)


@st.composite
def near_misses(draw) -> list:
    """Good observations with one a little wrong, somewhere among them."""
    good = draw(st.lists(good_observation, min_size=0, max_size=4))
    where = draw(st.integers(min_value=0, max_value=len(good)))
    good.insert(where, draw(observation()))
    return good


observation_arrays = (
    st.lists(good_observation, min_size=1, max_size=4)
    | near_misses()
    | st.lists(observation(), max_size=4)
    | st.sampled_from([{}, [], None, 0, "[]", {"readings": {"CO2": 1}}])
)


column_names = st.sampled_from(["co2", "temp", "rid", "time", "marker"]) | odd_text


@st.composite
def column_maps(draw) -> dict:
    """Legacy upload columns: name -> list of values (or one value)."""
    length = draw(st.integers(min_value=0, max_value=4))
    names = draw(st.lists(column_names, min_size=1, max_size=4))
    return {
        name: draw(st.lists(values, min_size=length, max_size=length) | values)
        for name in names
    }


@st.composite
def csv_bodies(draw) -> bytes:
    """A CSV upload: header (repeats allowed), ragged rows, odd cells."""
    header = draw(st.lists(column_names, min_size=0, max_size=4))
    cells = numbers.map(str) | odd_text
    rows = draw(st.lists(st.lists(cells, max_size=5), max_size=4))
    out = io.StringIO()
    writer = csv.writer(out)
    for row in [header, *rows]:
        writer.writerow(row)
    return out.getvalue().encode("utf-8", "surrogatepass")


def encode(document, packer: str) -> tuple[bytes, dict[str, str]]:
    """The body and its headers; documents msgpack cannot hold are skipped."""
    if packer == "msgpack":
        try:
            return msgpack.packb(document), {"Content-Type": "application/msgpack"}
        except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
            assume(False)
    body = json.dumps(document).encode()  # lone surrogates become \\ud800 escapes
    headers = {"Content-Type": "application/json"}
    if packer == "json-gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return body, headers


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def live(request, tmp_path_factory):
    """An app on a fresh database, its client, and an engine of the test's own."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz-bodies") / "co2.sqlite"
        db, url, cleanup = str(path), f"sqlite:///{path}", None
    else:
        admin = request.getfixturevalue("postgres_url")
        name = f"fuzz_{uuid.uuid4().hex}"
        create_database(admin, name)
        db = url = replace_database(admin, name)
        cleanup = (admin, name)
    with pytest.MonkeyPatch.context() as env:
        # Module-scoped, so before the autouse reset: CO2LOGSERVER_FUZZ_EXAMPLES
        # is the test's setting, not the server's.
        for key in [k for k in os.environ if k.startswith("CO2LOGSERVER_")]:
            env.delenv(key)
        app = create_app(
            {
                "DB": db,
                "RATELIMIT_ENABLED": False,
                "SQLITE_SYNCHRONOUS": "OFF",
                "SPOOL_DIR": str(tmp_path_factory.mktemp("fuzz-spool")),
            }
        )
    app.config["TESTING"] = True
    client = app.test_client()
    engine = create_engine(url)
    suid = str(uuid.uuid4())
    secret = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    try:
        yield client, engine, (suid, secret)
    finally:
        engine.dispose()
        get_store(app).dispose()
        if cleanup:
            drop_database(*cleanup)


def send(live, method: str, path: str, body: bytes, headers: dict):
    """Send one request; check the answer's shape and that a refusal stored nothing."""
    client, engine, _sensor = live
    before = row_counts(engine)
    reply = client.open(path, method=method, data=body, headers=headers)
    assert reply.status_code < 500, (path, body[:300], reply.data)
    if reply.status_code >= 400:
        error = reply.get_json(silent=True)
        assert isinstance(error, dict) and isinstance(error.get("error"), str), (
            reply.data
        )
        assert row_counts(engine) == before, (path, body[:300], reply.data)
    return reply


@FUZZ
@given(
    document=observation_arrays,
    packer=st.sampled_from(["json", "json", "json-gzip"]),
    route=st.sampled_from(["signed", "rogue", "new"]),
)
def test_observation_bodies(live, document, packer, route):
    body, headers = encode(document, packer)
    suid, secret = live[2]
    if route == "signed":
        headers["Authorization"] = f"OpenSmogHash {opensmog_hash(body, secret)}"
        path = f"/v1/sensors/{suid}/readings"
    elif route == "rogue":
        path = f"/rogue/v1/sensors/{uuid.uuid4()}/readings"
    else:  # first use of an unregistered SUID on the verified route
        path = f"/v1/sensors/{uuid.uuid4()}/readings"
    send(live, "POST", path, body, headers)


@FUZZ
@given(body=csv_bodies(), gzipped=st.booleans())
def test_legacy_csv_bodies(live, body, gzipped):
    headers = {"Content-Type": "text/csv"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    send(live, "POST", "/upload", body, headers)


@FUZZ
@given(
    document=column_maps() | st.lists(column_maps(), max_size=3),
    packer=st.sampled_from(["json", "msgpack", "json-gzip"]),
)
def test_legacy_column_maps(live, document, packer):
    body, headers = encode(document, packer)
    send(live, "POST", "/upload", body, headers)


@FUZZ
@given(
    metadata=st.dictionaries(
        st.sampled_from(["name", "manufacturer", "model", "location", "exposure"])
        | odd_text,
        values | st.fixed_dictionaries({"lat": numbers, "lon": numbers}),
        max_size=4,
    )
)
def test_registration_bodies(live, metadata):
    body, headers = encode(metadata, "json")
    send(live, "PUT", f"/v1/sensors/{uuid.uuid4()}", body, headers)

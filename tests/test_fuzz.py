"""Property tests: any input gets a 2xx or a 4xx, never a 5xx; accepted data reads back.

Hypothesis drives the parsers, the ingest validation and the header parsing as pure
functions, and the HTTP routes through the test client. Example counts are bounded
and no example database is written, so the runs stay short and leave no files.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from urllib.parse import urlencode

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from co2logserver import auth, create_app, observation_checks, parsers, upload_checks
from co2logserver.errors import ApiError
from co2logserver.readings import QUANTITIES
from co2logserver.store import get_store
from tests.conftest import opensmog_hash

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Durability is not under test here; OFF makes the many small commits cheap.
#: Examples that write to the database and read back cost more: fewer of them.
FUZZ_DB = settings(FUZZ, max_examples=40)
SETTINGS_DEFAULTS = {"RATELIMIT_ENABLED": False, "SQLITE_SYNCHRONOUS": "OFF"}
MIMETYPES = [
    "application/json",
    "text/csv",
    "application/x-www-form-urlencoded",
    "application/msgpack",
    "application/x-msgpack",
    "text/plain",
    "",
]
NOW = 1_750_000_000

#: Any text, lone surrogates and control characters included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """One app on one SQLite file for all examples of the module."""
    path = tmp_path_factory.mktemp("fuzz") / "co2.sqlite"
    app = create_app({"DB": str(path), "MAX_COLUMNS": 1000, **SETTINGS_DEFAULTS})
    app.config["TESTING"] = True
    yield app
    get_store(app).dispose()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_app):
    return fuzz_app.test_client()


@pytest.fixture(scope="module")
def secure_sensor(fuzz_client) -> tuple[str, str]:
    """A SUID registered via PUT and its SECRET."""
    suid = str(uuid.uuid4())
    reply = fuzz_client.put(f"/v1/sensors/{suid}", json={})
    return suid, reply.get_data(as_text=True)


def assert_answered(reply) -> None:
    """A 2xx, or a 4xx in the JSON error shape; never a 5xx."""
    assert reply.status_code < 500, reply.data
    if reply.status_code >= 400:
        assert reply.is_json and set(reply.get_json()) == {"error"}, reply.data
    else:
        assert reply.status_code < 300


def only_api_errors(function, *args):
    """Call ``function``; an ApiError with a 4xx status is a fine answer."""
    try:
        return function(*args)
    except ApiError as error:
        assert 400 <= error.status < 500
        return None


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=3000), mimetype=st.sampled_from(MIMETYPES))
def test_parsers_take_any_bytes(body, mimetype):
    batch = only_api_errors(parsers.parse_upload, body, mimetype)
    if batch is not None:
        assert all(len(v) == batch.length for v in batch.columns.values())


@FUZZ
@given(document=json_documents, packer=st.sampled_from(["json", "msgpack"]))
def test_parsers_take_any_document(document, packer):
    if packer == "json":
        body, mimetype = json.dumps(document).encode(), "application/json"
    else:
        try:
            body, mimetype = msgpack.packb(document), "application/msgpack"
        except (UnicodeEncodeError, OverflowError):
            assume(False)  # msgpack has no lone surrogates nor ints over 64 bits
    only_api_errors(parsers.parse_upload, body, mimetype)


@FUZZ
@given(text=any_text)
def test_numbers_in_text_are_read_exactly(text):
    value = parsers.coerce_number(text)
    if isinstance(value, int):
        assert int(text) == value
    elif isinstance(value, float):
        assert float(text) == value
    else:
        assert value == text


@FUZZ
@given(
    body=st.binary(max_size=2000),
    encoding=st.sampled_from(["gzip", "x-gzip", "identity", "br", "", " GZip "]),
)
def test_content_decoding_takes_any_bytes(body, encoding):
    only_api_errors(parsers.decode_content, body, encoding, 1000)


@FUZZ
@given(data=st.binary(max_size=3000))
def test_gzip_round_trip_within_the_limit(data):
    decoded = only_api_errors(parsers.decode_content, gzip.compress(data), "gzip", 2000)
    if len(data) <= 2000:
        assert decoded == data
    else:
        assert decoded is None


@FUZZ
@given(document=json_documents | st.lists(json_documents, max_size=5))
def test_observation_validation_takes_any_document(document):
    config = {"CO2LOGSERVER_MAX_OBSERVATIONS": 1000, "CO2LOGSERVER_MAX_CLOCK_SKEW": 60}
    checked = only_api_errors(
        observation_checks.check_observations, document, config, NOW
    )
    for observation in checked or []:
        assert observation.readings
        assert all(math.isfinite(v) for v in observation.readings.values())


@FUZZ
@given(
    columns=st.dictionaries(
        any_text, st.lists(json_scalars, min_size=1, max_size=4), max_size=5
    )
)
def test_upload_validation_takes_any_columns(columns):
    batch = parsers.batch_from_columns(columns)
    config = {
        "CO2LOGSERVER_TIME_COLS": ["time"],
        "CO2LOGSERVER_TIME_CONVERTER": lambda v, c: v,
    }
    normal = only_api_errors(upload_checks.normalise, batch, config)
    for name in normal.columns if normal else {}:
        assert upload_checks.COLUMN_NAME.fullmatch(name)


@FUZZ
@given(text=any_text)
def test_suid_parsing_takes_any_text(text):
    suid = only_api_errors(auth.parse_suid, text)
    if suid is not None:
        assert suid == text.lower() and str(uuid.UUID(suid)) == suid


@FUZZ
@given(authorization=any_text, body=st.binary(max_size=100))
def test_opensmog_header_parsing_takes_any_text(authorization, body):
    secret = "a" * 64
    assert auth.opensmog_hash_matches(authorization, body, secret) is (
        authorization.strip().lower()
        == f"opensmoghash {opensmog_hash(body, secret)}".lower()
    )


@FUZZ
@given(authorization=st.none() | any_text, tokens=st.lists(any_text, max_size=3))
def test_bearer_parsing_takes_any_text(authorization, tokens):
    allowed = only_api_errors(auth.bearer_token_allowed, authorization, tokens)
    if allowed:
        assert authorization.strip().partition(" ")[2].strip() in tokens


@FUZZ
@given(
    headers=st.lists(st.tuples(any_text, any_text), max_size=6),
    body=st.binary(max_size=100),
)
def test_salted_header_parsing_takes_any_headers(headers, body):
    checksums = auth.salted_checksums(headers)
    matches = auth.match_checksums(body, checksums, ["salt-one", "salt-two"])
    assert set(matches) == set(checksums)
    assert all(salt in (None, "salt-one", "salt-two") for salt in matches.values())


# --------------------------------------------------------------------------------------
# Through HTTP
# --------------------------------------------------------------------------------------

header_names = st.sampled_from(
    [
        "Content-Encoding",
        "Authorization",
        "Content-MD5-Salted",
        "Content-SHA256-Salted",
        "Content-Shake_128-Salted",
        "X-Forwarded-For",
        "Accept",
    ]
)
header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=126), max_size=80
) | st.sampled_from(["gzip", "OpenSmogHash " + "0" * 64, "Bearer x", "deflate"])


@FUZZ
@given(
    body=st.binary(max_size=2000)
    | json_documents.map(lambda d: json.dumps(d).encode()),
    mimetype=st.sampled_from(MIMETYPES),
    headers=st.dictionaries(header_names, header_values, max_size=3),
)
def test_upload_answers_any_body_and_headers(fuzz_client, body, mimetype, headers):
    reply = fuzz_client.post(
        "/upload", data=body, headers={"Content-Type": mimetype, **headers}
    )
    assert_answered(reply)


@FUZZ
@given(
    body=st.binary(max_size=1000)
    | json_documents.map(lambda d: json.dumps(d).encode()),
    headers=st.dictionaries(header_names, header_values, max_size=3),
    route=st.sampled_from(["secure", "rogue", "register", "unknown"]),
    suid_text=st.sampled_from(["valid", "upper"]) | any_text,
)
def test_sensor_routes_answer_any_request(
    fuzz_client, secure_sensor, body, headers, route, suid_text
):
    suid = {"valid": secure_sensor[0], "upper": secure_sensor[0].upper()}.get(
        suid_text, suid_text.replace("/", "")
    )
    paths = {
        "secure": ("POST", f"/v1/sensors/{suid}/readings"),
        "rogue": ("POST", f"/rogue/v1/sensors/{suid}/readings"),
        "register": ("PUT", f"/v1/sensors/{uuid.uuid4()}"),
        "unknown": ("POST", f"/v1/sensors/{uuid.uuid4()}/readings"),
    }
    method, path = paths[route]
    reply = fuzz_client.open(path, method=method, data=body, headers=headers)
    assert_answered(reply)


@FUZZ
@given(authorization=any_text.filter(lambda t: "\n" not in t and "\r" not in t))
def test_secure_readings_answer_any_authorization(
    fuzz_client, secure_sensor, authorization
):
    suid, secret = secure_sensor
    body = json.dumps([{"timestamp": NOW, "readings": {"CO": 1.0}}]).encode()
    try:
        headers = {"Authorization": authorization}
        reply = fuzz_client.post(
            f"/v1/sensors/{suid}/readings", data=body, headers=headers
        )
    except ValueError:
        return  # the test client itself refuses some header values
    good = authorization.strip().lower() == (
        "opensmoghash " + opensmog_hash(body, secret)
    )
    assert reply.status_code == (200 if good else 401), reply.data


query_keys = st.sampled_from(
    ["format", "cols", "number", "order_by", "min_co2", "max_co2", "min_time",
     "max_time_upload_utc", "min_", "max_nope", "type", "from", "to", "limit",
     "cursor", "verified", "aggregate", "sort", "order", "range"]
) | any_text  # fmt: skip


@FUZZ_DB
@given(query=st.lists(st.tuples(query_keys, any_text), max_size=5))
def test_read_routes_answer_any_query_string(fuzz_client, secure_sensor, query):
    fuzz_client.post("/upload", json={"co2": [1], "time": [NOW]})
    encoded = urlencode(
        [(k.encode("utf-8", "replace"), v.encode("utf-8", "replace")) for k, v in query]
    )
    for path in (
        "/download",
        f"/v1/sensors/{secure_sensor[0]}/readings",
        "/v1/sensors",
        "/sensors",
        f"/sensors/{secure_sensor[0]}",
    ):
        reply = fuzz_client.get(f"{path}?{encoded}")
        assert reply.status_code < 500, (path, encoded, reply.data)


# --------------------------------------------------------------------------------------
# Accepted data reads back equal
# --------------------------------------------------------------------------------------

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
#: Column name -> values of one kind, so the column's type fits every value.
COLUMN_KINDS = {f"i{n}": int64 for n in range(3)}
COLUMN_KINDS |= {f"f{n}": finite for n in range(3)}
COLUMN_KINDS |= {f"t{n}": texts for n in range(3)}


@st.composite
def uploads(draw) -> dict[str, list]:
    """Columns of equal length, each of one kind, missing values included."""
    length = draw(st.integers(min_value=1, max_value=5))
    names = draw(st.sets(st.sampled_from(sorted(COLUMN_KINDS)), min_size=1))
    return {
        name: draw(
            st.lists(st.none() | COLUMN_KINDS[name], min_size=length, max_size=length)
        )
        for name in sorted(names)
    }


@pytest.fixture(scope="module")
def typed_columns(fuzz_client) -> None:
    """Create the columns with their kind first.

    A column is typed by the first upload that brings it, and one whose values are
    all missing becomes text (numbers then read back as their text).
    """
    seed = {"i0": 1, "i1": 1, "i2": 1, "f0": 0.5, "f1": 0.5, "f2": 0.5}
    seed |= {"t0": "a", "t1": "a", "t2": "a", "marker": "seed"}
    assert fuzz_client.post("/upload", json=seed).status_code == 200


@FUZZ_DB
@given(columns=uploads())
def test_accepted_uploads_read_back_equal(fuzz_client, typed_columns, columns):
    marker = uuid.uuid4().hex
    length = len(next(iter(columns.values())))
    body = {**columns, "marker": [marker] * length}
    reply = fuzz_client.post("/upload", json=body)
    assert_answered(reply)
    if reply.status_code != 200:
        return
    assert reply.get_json() == {"saved-in-db": length}
    query = {"format": "json", "min_marker": marker, "max_marker": marker}
    query["cols"] = ",".join(columns)
    rows = fuzz_client.get("/download", query_string=query).get_json()
    stored = {name: [row[name] for row in rows] for name in columns}
    assert stored == columns


observation_strategy = st.fixed_dictionaries(
    {
        "timestamp": st.integers(min_value=946684800, max_value=NOW),
        "readings": st.dictionaries(
            st.sampled_from(sorted(QUANTITIES)),
            st.integers(min_value=-(10**12), max_value=10**12) | finite,
            min_size=1,
        ),
    }
)


@FUZZ_DB
@given(payload=st.lists(observation_strategy, min_size=1, max_size=20))
def test_accepted_readings_read_back_equal(fuzz_client, payload):
    suid = str(uuid.uuid4())
    reply = fuzz_client.post(
        f"/rogue/v1/sensors/{suid}/readings", data=json.dumps(payload).encode()
    )
    assert reply.status_code == 200, reply.data
    expected: dict[tuple[int, str], float] = {}
    for observation in payload:  # the first value sent for a key stands
        for kind, number in observation["readings"].items():
            expected.setdefault((observation["timestamp"], kind), float(number))
    page = fuzz_client.get(f"/v1/sensors/{suid}/readings", query_string={"limit": 500})
    stored = {
        (r["timestamp"], r["type"]): r["value"] for r in page.get_json()["readings"]
    }
    assert stored == expected

"""Security checks: SQL injection is refused, secrets are compared in constant time
and never logged."""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import requests
from werkzeug.serving import make_server

from co2logserver import create_app
from co2logserver.errors import ConfigError
from tests.conftest import observations, opensmog_hash

PACKAGE = Path(__file__).resolve().parent.parent / "co2logserver"
TS = 1_700_000_000

INJECTED_NAMES = [
    "co2; DROP TABLE data; --",
    'x" INTEGER); DROP TABLE data; --',
    "a' OR '1'='1",
    "time_upload_utc) VALUES (1); DELETE FROM data; --",
    "co2 --",
    '"data"',
    "x`",
    "c\u043e2",  # a Cyrillic o
    "co2\x00",
    "(SELECT secret FROM registrations)",
]


def snapshot(db_path: str) -> tuple[list, list]:
    """Schema and data rows, to compare before and after an attack."""
    with sqlite3.connect(db_path) as db:
        tables = db.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
        rows = db.execute("SELECT * FROM data ORDER BY rowid").fetchall()
    return tables, rows


def encode(fmt: str, name: str) -> tuple[bytes, str]:
    """An upload with one column called ``name`` in the given format."""
    if fmt == "json":
        return json.dumps({name: [1]}).encode(), "application/json"
    if fmt == "msgpack":
        return msgpack.packb({name: [1]}), "application/msgpack"
    if fmt == "csv":
        quoted = '"' + name.replace('"', '""') + '"'
        return f"{quoted}\n1".encode(), "text/csv"
    from urllib.parse import urlencode

    return urlencode({name: "1"}).encode(), "application/x-www-form-urlencoded"


@pytest.fixture
def seeded(client, db_path):
    """A client on a data table with a few rows."""
    rows = {"co2": [400, 500, 600], "note": ["a", "b'c", "z"]}
    assert client.post("/upload", json=rows).status_code == 200
    return client


@pytest.mark.parametrize("fmt", ["json", "msgpack", "csv", "form"])
@pytest.mark.parametrize("name", INJECTED_NAMES)
def test_column_names_cannot_inject_sql(seeded, db_path, fmt, name):
    before = snapshot(db_path)
    body, mimetype = encode(fmt, name)
    reply = seeded.post("/upload", data=body, content_type=mimetype)
    assert reply.status_code == 400, reply.data
    assert set(reply.get_json()) == {"error"}
    assert snapshot(db_path) == before


@pytest.mark.parametrize(
    "query",
    [
        {"cols": "co2,(SELECT secret FROM registrations)"},
        {"cols": "*"},
        {"cols": "co2 FROM data; DROP TABLE data; --"},
        {"cols": "co2,note--"},
        {"min_co2": "1 OR 1=1"},
        {"max_co2": "0); DROP TABLE data; --"},
        {"min_co2;DROP TABLE data": "1"},
        {"max_(SELECT 1)": "1"},
        {"min_time_upload_utc": "2000' OR '1'='1"},
        {"order_by": "co2; DROP TABLE data"},
        {"order_by": "co2,asc; DROP TABLE data"},
        {"order_by": "(SELECT 1)"},
        {"order_by": "co2,desc NULLS FIRST"},
        {"order_by": "1"},
        {"number": "1; DROP TABLE data"},
        {"number": "-1"},
        {"format": "csv'; --"},
    ],
)
def test_download_parameters_cannot_inject_sql(seeded, db_path, query):
    before = snapshot(db_path)
    reply = seeded.get("/download", query_string={"format": "json", **query})
    assert reply.status_code == 400, reply.data
    assert set(reply.get_json()) == {"error"}
    assert snapshot(db_path) == before


def test_quotes_in_filter_values_are_only_values(seeded, db_path):
    before = snapshot(db_path)
    reply = seeded.get(
        "/download", query_string={"format": "json", "min_note": "b' OR '1'='1"}
    )
    assert reply.status_code == 200
    assert [row["note"] for row in reply.get_json()] == ["b'c", "z"]
    assert snapshot(db_path) == before


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/sensors/{suid}/readings", {"type": "PM10' OR 1=1 --"}),
        ("/v1/sensors/{suid}/readings", {"from": "0; DROP TABLE readings"}),
        ("/v1/sensors/{suid}/readings", {"cursor": "1-2-3) OR (1=1"}),
        ("/v1/sensors/{suid}/readings", {"limit": "10; DROP TABLE readings"}),
        ("/v1/sensors/{suid}/readings", {"verified": "true' OR '1'='1"}),
        ("/sensors", {"sort": "suid; DROP TABLE sensors"}),
        ("/v1/sensors/x'%3B DROP TABLE sensors --/readings", {}),
    ],
)
def test_sensor_queries_cannot_inject_sql(seeded, sensors, db_path, path, query):
    suid = sensors.new_suid()
    assert sensors.post_rogue(suid, observations(TS)).status_code == 200
    before = snapshot(db_path)
    reply = seeded.get(path.format(suid=suid), query_string=query)
    assert 400 <= reply.status_code < 500, reply.data
    assert snapshot(db_path) == before


@pytest.mark.parametrize("suid", ["x' OR '1'='1", "1; DROP TABLE sensors", "%00"])
def test_suids_cannot_inject_sql(seeded, db_path, suid):
    before = snapshot(db_path)
    for method in ("PUT", "POST"):
        path = f"/v1/sensors/{suid}" + ("/readings" if method == "POST" else "")
        reply = seeded.open(path, method=method, data=observations(TS))
        assert reply.status_code == 400, reply.data
    assert snapshot(db_path) == before


# --------------------------------------------------------------------------------------
# Constant-time comparisons
# --------------------------------------------------------------------------------------

SENSITIVE = re.compile(r"secret|digest|token|salt|hash|passw|checksum|signature", re.I)
NOT_SECRETS = {"hashlib", "algorithms_guaranteed"}


def identifiers(node: ast.AST) -> set[str]:
    """Names and attribute names used in an expression."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
    return found - NOT_SECRETS


def plain_comparisons_of_secrets() -> Iterator[str]:
    """``==``/``!=``/``in`` comparisons in the package that involve a secret."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                for op in node.ops
            ):
                continue
            operands = [node.left, *node.comparators]
            if any(
                SENSITIVE.search(name)
                for operand in operands
                if not isinstance(operand, ast.Constant)
                for name in identifiers(operand)
            ):
                yield f"{path.name}:{node.lineno}: {ast.unparse(node)}"


def test_no_secret_is_compared_with_plain_equality():
    assert list(plain_comparisons_of_secrets()) == []


def test_the_scan_finds_a_plain_comparison(tmp_path, monkeypatch):
    """The scan above can fail: it flags ``digest == given``."""
    (tmp_path / "bad.py").write_text(
        "def f(digest, given):\n    return digest == given\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    assert len(list(plain_comparisons_of_secrets())) == 1


@pytest.fixture
def compared(monkeypatch) -> list[tuple]:
    """Every pair that ``hmac.compare_digest`` is asked about (it still decides)."""
    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def flat(calls: list[tuple]) -> set:
    return {
        side.decode() if isinstance(side, bytes) else side for c in calls for side in c
    }


SALT = "my-super-secret-psk"
TOKEN = "admin-token-" + "7" * 20


def test_every_secret_goes_through_compare_digest(make_app, compared):
    client = make_app(
        CHECKSUM_SALTS=[SALT], UPLOAD_REQUIRES_AUTH=True, ADMIN_TOKENS=[TOKEN]
    ).test_client()
    suid = str(uuid.uuid4())
    secret = client.put(f"/v1/sensors/{suid}", json={}).get_data(as_text=True)
    body = observations(TS)
    good = opensmog_hash(body, secret)
    compared.clear()
    reply = client.post(
        f"/v1/sensors/{suid}/readings",
        data=body,
        headers={"Authorization": f"OpenSmogHash {good}"},
    )
    assert reply.status_code == 200
    assert good in flat(compared)

    upload = b'{"co2": [1]}'
    digest = hashlib.sha256(upload + SALT.encode()).hexdigest()
    compared.clear()
    reply = client.post(
        "/upload",
        data=upload,
        content_type="application/json",
        headers={"Content-SHA256-Salted": digest},
    )
    assert reply.status_code == 200
    assert digest in flat(compared)

    compared.clear()
    client.get("/v1/sensors", headers={"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN in flat(compared)


# --------------------------------------------------------------------------------------
# Secrets never in logs
# --------------------------------------------------------------------------------------


@pytest.fixture
def live_server(make_app) -> Iterator[str]:
    """The app on a real HTTP server, logging everything at DEBUG."""
    app = make_app(
        LOGLEVEL="DEBUG",
        CHECKSUM_SALTS=[SALT],
        UPLOAD_REQUIRES_AUTH=True,
        DOWNLOAD_REQUIRES_AUTH=True,
        ADMIN_TOKENS=[TOKEN],
        RATELIMIT_ENABLED=True,
        RATELIMIT_SENSOR="7 per minute",
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def sensor_traffic(url: str, suid: str) -> list[str]:
    """Register twice, post good, bad and old hashes; return the SECRETs issued."""
    secrets_ = [requests.put(f"{url}/v1/sensors/{suid}", json={}, timeout=10).text]
    body = observations(TS)
    readings = f"{url}/v1/sensors/{suid}/readings"
    for secret in (secrets_[0], "f" * 64):
        header = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
        requests.post(readings, data=body, headers=header, timeout=10)
    requests.post(readings, data=body, timeout=10)
    requests.post(f"{url}/rogue/v1/sensors/{suid}/readings", data=body, timeout=10)
    rotate = {"Authorization": f"OpenSmogHash {opensmog_hash(b'{}', secrets_[0])}"}
    secrets_.append(
        requests.put(
            f"{url}/v1/sensors/{suid}", data=b"{}", headers=rotate, timeout=10
        ).text
    )
    header = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secrets_[0])}"}
    old = requests.post(readings, data=body, headers=header, timeout=10)
    assert old.status_code == 401  # the first SECRET stopped working
    limited = requests.post(readings, data=body, headers=header, timeout=10)
    assert limited.status_code == 429  # and the limiter logged its line
    return secrets_


def legacy_traffic(url: str) -> None:
    """Uploads and downloads with right and wrong salted checksums; admin reads."""
    body = b'{"co2": [1]}'
    for salt in (SALT, "wrong"):
        digest = hashlib.md5(body + salt.encode()).hexdigest()
        requests.post(
            f"{url}/upload",
            data=body,
            headers={"Content-Type": "application/json", "Content-MD5-Salted": digest},
            timeout=10,
        )
        path = "/download?format=json"
        digest = hashlib.md5(path.encode() + salt.encode()).hexdigest()
        requests.get(url + path, headers={"Content-MD5-Salted": digest}, timeout=10)
    for token in (TOKEN, TOKEN + "x"):
        requests.get(
            f"{url}/v1/sensors",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


def test_no_secret_salt_or_token_in_any_log_line(live_server, caplog):
    caplog.set_level(logging.DEBUG)
    suid = str(uuid.uuid4())
    issued = sensor_traffic(live_server, suid)
    legacy_traffic(live_server)
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in issued)
    logged = "\n".join(
        record.getMessage() + (record.exc_text or "") for record in caplog.records
    )
    assert f"/v1/sensors/{suid}/readings" in logged  # the logs were captured
    for secret in (*issued, SALT, TOKEN):
        assert secret not in logged


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CHECKSUM_SALTS", "my-super-secret-psk"),
        ("ADMIN_TOKENS", "admin-token-secret-value"),
        ("RATELIMIT_STORAGE", "floppy://:redis-password-value@127.0.0.1:6379"),
    ],
)
def test_config_errors_do_not_echo_secrets(db_path, key, value):
    with pytest.raises(ConfigError) as raised:
        create_app({"DB": db_path, key: value})
    assert value not in str(raised.value)

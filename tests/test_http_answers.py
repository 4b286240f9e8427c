"""Requests that used to get the wrong answer (#12): each status and message says
what was wrong, and nothing of a refused request is stored."""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket
import time

import pytest

from tests.appserver import GunicornServer
from tests.conftest import SensorActions, observations, opensmog_hash

NOW = int(time.time())


def stored_rows(client) -> list[dict]:
    return client.get("/download?format=json").get_json()


# --- CSV rows with the wrong number of cells -----------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "row", "cells"),
    [
        (b"time,co2\n43,1223\n23\n", 3, 2, 1),
        (b"time,co2\n43,1223,7\n23,2351\n", 2, 1, 3),
        (b"time,co2,hum\n43,1223,50\n\n23,2351\n", 4, 2, 2),
    ],
    ids=["short-row", "long-row", "short-after-blank-line"],
)
def test_csv_row_with_another_cell_count_is_a_400_naming_it(
    client, body, line, row, cells
):
    response = client.post("/upload", data=body, content_type="text/csv")
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert f"CSV line {line} (row {row}) has {cells} cells" in message
    assert stored_rows(client) == []


def test_csv_rows_with_empty_cells_are_still_accepted(client):
    response = client.post(
        "/upload", data=b"time,co2\n43,\n,2351\n", content_type="text/csv"
    )
    assert response.get_json() == {"saved-in-db": 2}


# --- Content types of a readings POST --------------------------------------------


@pytest.fixture
def api(client) -> SensorActions:
    return SensorActions(client)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/csv",
        "application/x-www-form-urlencoded",
        "application/msgpack",
        "application/x-msgpack",
        "multipart/form-data; boundary=x",
    ],
)
@pytest.mark.parametrize("route", ["/v1", "/rogue/v1"])
def test_readings_in_another_format_are_a_415_saying_send_json(
    api, content_type, route
):
    suid = api.new_suid()
    response = api.client.post(
        f"{route}/sensors/{suid}/readings",
        data=observations(NOW),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415, response.data
    message = response.get_json()["error"]
    assert "JSON" in message
    assert content_type.partition(";")[0] in message
    assert api.client.get(f"/v1/sensors/{suid}").status_code == 404  # nothing stored


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/octet-stream",
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=ISO-8859-1",
    ],
)
def test_readings_as_json_or_undeclared_are_accepted(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post_rogue(api.new_suid(), observations(NOW), headers=headers)
    assert response.status_code == 200, response.data


def test_stored_readings_answer_an_empty_body_that_claims_no_html(api):
    response = api.post_rogue(api.new_suid(), observations(NOW))
    assert response.status_code == 200
    assert response.data == b""
    assert "text/html" not in response.headers.get("Content-Type", "")


# --- Size limit, gzip hashes ---------------------------------------------------------


def test_body_over_the_limit_names_the_limit_and_its_key(make_app):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    suid = SensorActions.new_suid()
    body = observations(*range(NOW - 100, NOW))
    assert len(body) > 1000
    response = client.post(f"/rogue/v1/sensors/{suid}/readings", data=body)
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert "1000 bytes" in message
    assert "CO2LOGSERVER_MAX_CONTENT_LENGTH" in message


def test_wrong_hash_of_a_gzip_body_explains_the_compressed_bytes(api):
    suid = api.new_suid()
    secret = api.register(suid)
    body = observations(NOW)
    wrong = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    gzipped = api.client.post(
        f"/v1/sensors/{suid}/readings",
        data=gzip.compress(body),
        headers={**wrong, "Content-Encoding": "gzip"},
    )
    assert gzipped.status_code == 401
    assert "compressed bytes exactly as sent" in gzipped.get_json()["error"]
    plain = api.post(suid, body, secret="0" * 64)
    assert plain.status_code == 401
    assert "compressed" not in plain.get_json()["error"]


# --- Read-back parameters --------------------------------------------------------


def test_download_filter_that_is_not_a_number_names_the_parameter(client):
    client.post("/upload", json={"co2": [400]})
    response = client.get("/download?min_co2=abc")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("min_co2: 'abc' is not a number")


def test_aggregate_as_csv_is_csv(api):
    suid = api.new_suid()
    api.post_rogue(suid, observations(NOW - 120, NOW - 60, PM10=5.0))
    response = api.client.get(
        f"/v1/sensors/{suid}/readings?aggregate=1h&format=csv&type=PM10"
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["type", "unit", "start", "count", "min", "mean", "max"]
    assert sum(int(row[3]) for row in rows[1:]) == 2
    assert {row[0] for row in rows[1:]} == {"PM10"}


@pytest.mark.parametrize("limit", ["0", "000", "-1", "x", "²"])
def test_readings_limit_below_one_is_a_400(api, limit):
    suid = api.new_suid()
    api.post_rogue(suid, observations(NOW))
    response = api.client.get(f"/v1/sensors/{suid}/readings?limit={limit}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("limit must be a whole number")


def test_sensor_list_pages_with_limit_and_cursor(api):
    suids = sorted(api.new_suid() for _ in range(5))
    for suid in suids:
        api.post_rogue(suid, observations(NOW))
    assert list(api.client.get("/v1/sensors").get_json()) == ["sensors"]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get("/v1/sensors" + query).get_json()
        seen += [sensor["suid"] for sensor in page["sensors"]]
        pages += 1
        cursor = page.get("next")
        if cursor is None:
            break
        assert len(page["sensors"]) == 2
    assert seen == suids
    assert pages == 3
    assert api.client.get("/v1/sensors?limit=0").status_code == 400


# --- A browser's 404 -----------------------------------------------------------------

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    "path", ["/no/such/page", f"/sensors/{SensorActions.new_suid()}"]
)
def test_a_browser_gets_an_html_404_with_links(client, path):
    response = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for link in ('href="/sensors"', 'href="/download"', 'href="/v1/sensors"'):
        assert link in page


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_api_clients_keep_json_404s(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/no/such/page", headers=headers)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert "error" in response.get_json()


# --- A POST without a length (HTTP/1.0) over a real socket -----------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("length")
    settings = {"DB": str(workdir / "co2.sqlite"), "RATELIMIT_ENABLED": "False"}
    with GunicornServer(workdir, settings, workers=1) as running:
        yield running


def http10_post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """POST as an HTTP/1.0 client that sends neither Content-Length nor chunks."""
    head = (
        f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "path",
    ["/upload", f"/rogue/v1/sensors/{SensorActions.new_suid()}/readings"],
)
def test_post_without_a_length_is_a_411_saying_so(server, path):
    status, body = http10_post(server.port, path, observations(NOW))
    assert status == 411
    assert "Content-Length" in json.loads(body)["error"]

"""LoRaWAN webhooks (SPEC §9.3): The Things Stack v3 and ChirpStack v4.

The bodies in ``tests/data/lorawan`` are byte-for-byte what the servers marshal
(The Things Stack's compact jsonpb, ChirpStack's pbjson with ``emit_fields``), built
from real decoder outputs of The Things Network's device repository (Elsys ERS CO2,
Decentlab DL-LP8P) with their ``frm_payload``/``data`` bytes. Posted over real HTTP
to gunicorn on SQLite and PostgreSQL with the headers each server sets, and through
the Flask test client for the many bad-input cases; read back over ``/v1``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from co2logserver import devices
from co2logserver.protocols import lorawan
from tests.appserver import GunicornServer

DATA = Path(__file__).parent / "data" / "lorawan"
SECRET = "b1e5c0d2-webhook-secret-of-the-things-stack"
OTHER_SECRET = "7a9f3e61-webhook-secret-of-chirpstack"
ELSYS = "lorawan:a81758fffe0312b4"
DECENTLAB = "lorawan:70b3d57ba0000578"
TTN = "/lorawan/v1/ttn"
CHIRPSTACK = "/lorawan/v1/chirpstack"
#: What The Things Stack sets on a JSON webhook (pkg/applicationserver/io/web).
TTN_HEADERS = {
    "Content-Type": "application/json",
    "X-Tts-Domain": "eu1.cloud.thethings.network",
    "X-Webhook-Secret": SECRET,
}
#: What ChirpStack's HTTP integration sets with the JSON payload encoding.
CHIRPSTACK_HEADERS = {
    "Content-Type": "application/json",
    "X-Webhook-Secret": OTHER_SECRET,
}


def capture(name: str) -> bytes:
    """A captured body as the network server sends it."""
    return (DATA / name).read_bytes()


def edited(name: str, change) -> bytes:
    """A capture with ``change(document)`` applied, compact like the original."""
    document = json.loads(capture(name))
    change(document)
    return json.dumps(document, separators=(",", ":")).encode()


def suid(name: str) -> str:
    return devices.suid_for(name)


def readings_of(get, name: str) -> list[tuple[int, str, float, str, bool]]:
    """(timestamp, type, value, unit, verified) of a device, over the API."""
    page = get(f"/v1/sensors/{suid(name)}/readings")
    return sorted(
        (r["timestamp"], r["type"], r["value"], r["unit"], r["verified"])
        for r in page["readings"]
    )


ELSYS_TTN_TS = 1796034067  # uplink_message.rx_metadata[0].time 2026-11-30T10:21:07.67Z
ELSYS_CHIRPSTACK_TS = 1796034967  # time 2026-11-30T10:36:07.514193+00:00
DECENTLAB_TS = 1796036564  # uplink_message.received_at 2026-11-30T11:02:44.10Z


def test_capture_times_are_what_the_comments_say():
    assert lorawan.rfc3339_seconds("2026-11-30T10:21:07.671263933Z", "t") == (
        ELSYS_TTN_TS
    )
    assert lorawan.rfc3339_seconds("2026-11-30T10:36:07.514193+00:00", "t") == (
        ELSYS_CHIRPSTACK_TS
    )
    assert lorawan.rfc3339_seconds("2026-11-30T13:02:44.1+02:00", "t") == (DECENTLAB_TS)


# --- over real HTTP: gunicorn on SQLite and PostgreSQL --------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request, tmp_path):
    """gunicorn -w 2 with both webhook secrets, on a fresh SQLite or PostgreSQL."""
    db = str(tmp_path / "lorawan.sqlite")
    if request.param == "postgres":
        db = request.getfixturevalue("pg_database_url")
    settings = {
        "DB": db,
        "LORAWAN_WEBHOOK_SECRETS": json.dumps([SECRET, OTHER_SECRET]),
    }
    with GunicornServer(tmp_path, settings, workers=2) as server:
        yield server.url


def test_ttn_and_chirpstack_uplinks_of_one_device_are_one_verified_sensor(live):
    def get(path):
        answer = requests.get(live + path, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    ttn = requests.post(
        live + TTN, data=capture("ttn_uplink.json"), headers=TTN_HEADERS, timeout=10
    )
    assert (ttn.status_code, ttn.content) == (200, b"")
    chirp = requests.post(
        live + CHIRPSTACK + "?event=up",
        data=capture("chirpstack_up.json"),
        headers=CHIRPSTACK_HEADERS,
        timeout=10,
    )
    assert (chirp.status_code, chirp.content) == (200, b"")

    t, c = ELSYS_TTN_TS, ELSYS_CHIRPSTACK_TS
    assert readings_of(get, ELSYS) == sorted(
        [
            (t, "CO2", 776, "ppm", True),
            (t, "HUM", 41, "%", True),
            (t, "TEMP", 22.6, "°C", True),
            (t, "light", 39, "", True),
            (t, "motion", 6, "", True),
            (c, "CO2", 810, "ppm", True),
            (c, "HUM", 42, "%", True),
            (c, "TEMP", 22, "°C", True),
            (c, "light", 31, "", True),
            (c, "motion", 2, "", True),
        ]
    )
    [sensor] = get(f"/v1/sensors?alias={ELSYS}")["sensors"]
    assert sensor["suid"] == suid(ELSYS)
    assert (sensor["alias"], sensor["protocol"], sensor["secure"]) == (
        ELSYS,
        "lorawan",
        True,
    )
    # ChirpStack came last: the strongest gateway's location, rounded (§6).
    assert sensor["location"] == {
        "latitude": 48.78,
        "longitude": 9.18,
        "elevation": 282,
    }


def test_resending_an_uplink_stores_nothing_twice(live):
    for _ in range(2):
        answer = requests.post(
            live + TTN, data=capture("ttn_uplink.json"), headers=TTN_HEADERS, timeout=10
        )
        assert answer.status_code == 200, answer.text
    page = requests.get(live + f"/v1/sensors/{suid(ELSYS)}/readings", timeout=10)
    assert len(page.json()["readings"]) == 5
    [sensor] = requests.get(live + f"/v1/sensors?alias={ELSYS}", timeout=10).json()[
        "sensors"
    ]
    # The device's own location (locations.user), rounded: never the exact one.
    assert sensor["location"] == {
        "latitude": 48.78,
        "longitude": 9.18,
        "elevation": 263,
    }
    assert "48.775912" not in page.text + json.dumps(sensor)


def test_wrong_secret_and_feature_off_over_http(live, tmp_path):
    body = capture("ttn_uplink.json")
    for headers, status in (
        ({"Content-Type": "application/json"}, 401),
        ({**TTN_HEADERS, "X-Webhook-Secret": SECRET + "x"}, 401),
    ):
        answer = requests.post(live + TTN, data=body, headers=headers, timeout=10)
        assert answer.status_code == status
        assert "X-Webhook-Secret" in answer.json()["error"]
        assert SECRET not in answer.text
    assert requests.get(live + f"/v1/sensors?alias={ELSYS}", timeout=10).json() == {
        "sensors": []
    }


def test_webhooks_are_off_without_secrets_over_http(tmp_path):
    settings = {"DB": str(tmp_path / "off.sqlite")}
    with GunicornServer(tmp_path, settings, workers=1) as server:
        for path in (TTN, CHIRPSTACK + "?event=up"):
            answer = requests.post(
                server.url + path,
                data=capture("ttn_uplink.json"),
                headers=TTN_HEADERS,
                timeout=10,
            )
            assert answer.status_code == 404
            assert "CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS" in answer.json()["error"]

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
from hypothesis import given, settings
from hypothesis import strategies as st

from co2logserver import devices
from co2logserver.errors import BadRequest
from co2logserver.protocols import lorawan
from tests.appserver import GunicornServer
from tests.test_metrics import Delta

DATA = Path(__file__).parent / "data" / "lorawan"
SECRET = "b1e5c0d2-webhook-secret-of-the-things-stack"
OTHER_SECRET = "7a9f3e61-webhook-secret-of-chirpstack"
ELSYS = "lorawan:a81758fffe0312b4"
DECENTLAB = "lorawan:70b3d57ba0000578"
TTN = "/lorawan/v1/ttn"
CHIRPSTACK = "/lorawan/v1/chirpstack"
#: What The Things Stack sets on a JSON webhook (pkg/applicationserver/io/web,
#: pkg/httpclient; Go's client adds Accept-Encoding), plus the header the operator adds.
TTN_HEADERS = {
    "User-Agent": "TheThingsStack/3.32.1 (linux/amd64)",
    "Accept-Encoding": "gzip",
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
    status = requests.post(
        live + CHIRPSTACK + "?event=status",
        data=capture("chirpstack_status.json"),
        headers=CHIRPSTACK_HEADERS,
        timeout=10,
    )
    assert status.status_code == 200
    assert status.json() == {"ignored": "event status carries no readings"}

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


# --- through the Flask test client: every way a webhook can be wrong ------------


@pytest.fixture
def hook(any_db_app):
    """An app with both secrets on SQLite and PostgreSQL, and its client."""
    app = any_db_app(LORAWAN_WEBHOOK_SECRETS=[SECRET, OTHER_SECRET])
    return app.test_client()


def post_ttn(client, body: bytes, **headers):
    return client.post(TTN, data=body, headers={**TTN_HEADERS, **headers})


def post_chirpstack(client, body: bytes, event: str | None = "up", **headers):
    query = "" if event is None else f"?event={event}"
    return client.post(
        CHIRPSTACK + query, data=body, headers={**CHIRPSTACK_HEADERS, **headers}
    )


def stored(client, name: str) -> list[tuple[int, str, float, str, bool]]:
    return readings_of(lambda path: client.get(path).json, name)


def nothing_stored(client) -> bool:
    return client.get("/v1/sensors").json["sensors"] == []


def test_nested_payload_joins_keys_and_counts_strings(hook):
    delta = Delta(hook)
    answer = post_ttn(hook, capture("ttn_uplink_decentlab.json"))
    assert (answer.status_code, answer.data) == (200, b"")
    t = DECENTLAB_TS  # no gateway time: uplink_message.received_at
    found = {name: value for _, name, value, _, _ in stored(hook, DECENTLAB)}
    assert {ts for ts, *_ in stored(hook, DECENTLAB)} == {t}
    assert found["air_temperature_value"] == 24.35660461425781
    assert found["co2_concentration_value"] == 473
    assert found["barometric_pressure_value"] == 96800
    assert found["device_id"] == 1400
    assert len(found) == 15
    # displayName and unit are strings: 13 + 10 leaves ignored, and counted.
    assert delta.of("co2logserver_fields_ignored_total", protocol="lorawan") == 23
    assert (
        delta.of("co2logserver_protocol_readings_stored_total", protocol="lorawan")
        == 15
    )
    [sensor] = hook.get(f"/v1/sensors?alias={DECENTLAB}").json["sensors"]
    assert sensor["location"] is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    (
        (
            {"values": [1.5, 2.5], "pm25": 7},
            {"values_0": 1.5, "values_1": 2.5, "PM2_5": 7},
        ),
        ({"air": {"co2": 612, "ok": True, "state": "good"}}, {"air_co2": 612}),
        ({"temp": 21.0, "temperature": 21.5}, {"TEMP": 21.0, "temperature": 21.5}),
        (
            {"Temperature": -3, "PM10": 12, "noise": 41},
            {"TEMP": -3, "PM10": 12, "NOISE_LAEQ": 41},
        ),
    ),
)
def test_decoded_leaves_are_named_through_the_registry(hook, payload, expected):
    def change(document):
        document["uplink_message"]["decoded_payload"] = payload

    assert post_ttn(hook, edited("ttn_uplink.json", change)).status_code == 200
    assert {name: value for _, name, value, _, _ in stored(hook, ELSYS)} == expected


def ttn_with(**fields) -> bytes:
    """The Elsys capture with fields of uplink_message replaced (None removes)."""

    def change(document):
        for key, value in fields.items():
            if value is None:
                document["uplink_message"].pop(key, None)
            else:
                document["uplink_message"][key] = value

    return edited("ttn_uplink.json", change)


def test_a_gateway_clock_far_off_falls_back_to_the_network_servers_time(hook):
    metadata = json.loads(capture("ttn_uplink.json"))["uplink_message"]["rx_metadata"]
    metadata[0]["time"] = "2100-01-01T00:00:00Z"
    assert post_ttn(hook, ttn_with(rx_metadata=metadata)).status_code == 200
    # uplink_message.received_at 2026-11-30T10:21:07.726902351Z
    assert {ts for ts, *_ in stored(hook, ELSYS)} == {1796034067}


def test_without_any_time_the_receive_time_stamps_the_readings(hook):
    def change(document):
        document.pop("received_at")
        message = document["uplink_message"]
        message.pop("received_at")
        message["rx_metadata"][0].pop("time")

    before = int(time.time())
    assert post_ttn(hook, edited("ttn_uplink.json", change)).status_code == 200
    [ts] = {ts for ts, *_ in stored(hook, ELSYS)}
    assert before <= ts <= int(time.time())


def test_join_accepts_and_simulated_uplinks_are_answered_and_ignored(hook):
    answer = post_ttn(hook, capture("ttn_join_accept.json"))
    assert answer.status_code == 200
    assert "ignored" in answer.json
    simulated = edited("ttn_uplink.json", lambda d: d.update(simulated=True))
    assert post_ttn(hook, simulated).status_code == 200
    assert nothing_stored(hook)


@pytest.mark.parametrize(
    ("body", "message"),
    (
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"end_device_ids": {}}', "uplink_message is missing"),
        (b'{"uplink_message": []}', "uplink_message must be a JSON object"),
        (ttn_with(decoded_payload=None), "set an uplink payload formatter"),
        (capture("ttn_uplink_no_formatter.json"), "decoded_payload is missing"),
        (
            edited("ttn_uplink.json", lambda d: d["end_device_ids"].pop("dev_eui")),
            "end_device_ids.dev_eui is missing",
        ),
        (
            edited(
                "ttn_uplink.json",
                lambda d: d["end_device_ids"].update(dev_eui="A81758FFFE0312"),
            ),
            "end_device_ids.dev_eui must be a DevEUI of 16 hex digits",
        ),
        (ttn_with(decoded_payload=[1, 2]), "decoded_payload must be a JSON object"),
        (
            ttn_with(decoded_payload={"temperature": "21.5", "ok": True}),
            "no numeric values",
        ),
        (ttn_with(decoded_payload={"temperature": float("nan")}), "finite"),
        (
            b'{"uplink_message": {"decoded_payload": {"co2": 1e999}}, '
            b'"end_device_ids": {"dev_eui": "A81758FFFE0312B4"}}',
            "finite",
        ),
        (ttn_with(decoded_payload={"a": 10**400}), "finite"),
        (ttn_with(decoded_payload={"x" * 65: 1}), "1 to 64 printable"),
        (ttn_with(decoded_payload={"\ud800x": 1}), "is not valid Unicode text"),
        (
            edited(
                "ttn_uplink.json",
                lambda d: d["end_device_ids"].update(dev_eui="A" * 5000),
            ),
            "16 hex digits, not 'AAAAAAAAAA",
        ),
        (
            ttn_with(decoded_payload=json.loads('{"a":' * 20 + "1" + "}" * 20)),
            "nested deeper than 16",
        ),
        (
            ttn_with(locations={"user": {"latitude": 91, "longitude": 9}}),
            "uplink_message.locations.user.latitude 91 is outside",
        ),
        (
            ttn_with(received_at="30.11.2026 10:21", rx_metadata=[{}]),
            "uplink_message.received_at must be an RFC 3339 time",
        ),
    ),
)
def test_bad_ttn_bodies_are_refused_naming_the_field(hook, body, message):
    answer = post_ttn(hook, body)
    assert answer.status_code == 400, answer.json
    assert message in answer.json["error"]
    assert len(answer.json["error"]) < 400  # never the whole value echoed back
    assert nothing_stored(hook)


def test_no_decoded_payload_says_what_to_configure(hook):
    answer = post_ttn(hook, capture("ttn_uplink_no_formatter.json"))
    assert answer.status_code == 400
    assert answer.json["error"] == (
        "uplink_message.decoded_payload is missing: set an uplink payload formatter "
        "for the device or application (Payload formatters > Uplink), and check Live "
        "data for as.up.data.decode.fail events; nothing was stored"
    )


def test_protobuf_webhook_format_is_refused_with_how_to_fix(hook):
    answer = post_ttn(
        hook,
        b"\n\x0e\n\x0cers-co2-hall",
        **{"Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 415
    assert answer.json["error"].endswith('set the webhook\'s "Webhook format" to JSON')


@pytest.mark.parametrize(
    ("headers", "word"),
    (({"X-Webhook-Secret": ""}, "missing"), ({"X-Webhook-Secret": "guess"}, "wrong")),
)
def test_missing_or_wrong_secret_is_401_before_the_body_is_read(hook, headers, word):
    for answer in (
        post_ttn(hook, b"{not json", **headers),
        post_chirpstack(hook, b"{not json", **headers),
        post_chirpstack(hook, b"", event="join", **headers),
    ):
        assert answer.status_code == 401
        assert word in answer.json["error"]
    assert nothing_stored(hook)


def test_each_configured_secret_opens_both_webhooks(hook):
    for secret in (SECRET, OTHER_SECRET):
        body = ttn_with(f_cnt=1)
        assert post_ttn(hook, body, **{"X-Webhook-Secret": secret}).status_code == 200
    headers = {"X-Webhook-Secret": SECRET}
    assert (
        post_chirpstack(hook, capture("chirpstack_up.json"), **headers).status_code
        == 200
    )


def test_webhooks_are_off_without_secrets(make_app):
    client = make_app().test_client()
    for answer in (
        post_ttn(client, capture("ttn_uplink.json")),
        post_chirpstack(client, capture("chirpstack_up.json")),
    ):
        assert answer.status_code == 404
        assert answer.json["error"].startswith(
            "The LoRaWAN webhooks are off: set CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS"
        )


@pytest.mark.parametrize(
    ("event", "body"),
    (
        ("join", capture("chirpstack_join.json")),
        ("status", capture("chirpstack_status.json")),
        ("ack", b"{}"),
        ("txack", b"{}"),
        ("log", b"{}"),
        ("location", b"{}"),
        ("integration", b"{}"),
        ("some-future-event", b"not even json"),
    ),
)
def test_other_chirpstack_events_are_answered_and_ignored(hook, event, body):
    answer = post_chirpstack(hook, body, event=event)
    assert answer.status_code == 200
    assert "ignored" in answer.json
    assert nothing_stored(hook)


def chirpstack_with(**fields) -> bytes:
    """The ChirpStack capture with top-level fields replaced (None removes)."""

    def change(document):
        for key, value in fields.items():
            if value is None:
                document.pop(key, None)
            else:
                document[key] = value

    return edited("chirpstack_up.json", change)


@pytest.mark.parametrize(
    ("body", "event", "message"),
    (
        (capture("chirpstack_up.json"), None, "query parameter event is missing"),
        (capture("chirpstack_up_no_codec.json"), "up", "set a payload codec"),
        (chirpstack_with(deviceInfo={}), "up", "deviceInfo.devEui is missing"),
        (chirpstack_with(deviceInfo=None), "up", "deviceInfo.devEui is missing"),
        (chirpstack_with(time="yesterday"), "up", "time must be an RFC 3339 time"),
        (chirpstack_with(object="co2=5"), "up", "object must be a JSON object"),
        (chirpstack_with(object={}), "up", "no numeric values"),
        (
            chirpstack_with(rxInfo=[{"location": {"latitude": 1, "longitude": 200}}]),
            "up",
            "rxInfo[0].location.longitude 200 is outside",
        ),
        (b"", "up", "not JSON"),
    ),
)
def test_bad_chirpstack_uplinks_are_refused_naming_the_field(
    hook, body, event, message
):
    answer = post_chirpstack(hook, body, event=event)
    assert answer.status_code == 400, answer.json
    assert message in answer.json["error"]
    assert nothing_stored(hook)


def test_refusals_are_counted_by_webhook_and_reason(hook):
    delta = Delta(hook)
    assert (
        post_chirpstack(hook, capture("chirpstack_up_no_codec.json")).status_code == 400
    )
    assert post_ttn(hook, b"{}", **{"X-Webhook-Secret": "guess"}).status_code == 401
    rejected = "co2logserver_payloads_rejected_total"
    assert (
        delta.of(
            rejected, endpoint="lorawan.chirpstack", status="400", reason="BadRequest"
        )
        == 1
    )
    assert (
        delta.of(
            rejected, endpoint="lorawan.ttn", status="401", reason="BadOpenSmogHash"
        )
        == 1
    )


def test_the_documented_example_request_is_stored(hook):
    body = (
        b'{"end_device_ids":{"device_id":"ers-co2-hall","dev_eui":"A81758FFFE0312B4"},'
        b'"received_at":"2026-11-30T10:21:07.934157829Z",'
        b'"uplink_message":{"f_port":5,"decoded_payload":{"co2":776,"temperature":22.6}}}'
    )
    assert post_ttn(hook, body).status_code == 200
    assert stored(hook, ELSYS) == [
        (ELSYS_TTN_TS, "CO2", 776, "ppm", True),
        (ELSYS_TTN_TS, "TEMP", 22.6, "°C", True),
    ]
    found = hook.get("/v1/sensors?alias=a81758fffe0312b4").json["sensors"]
    assert [s["suid"] for s in found] == ["a2b3f0ae-c539-5243-94fa-95f23a1c68f0"]


def test_chirpstack_protobuf_encoding_is_refused_with_how_to_fix(hook):
    answer = post_chirpstack(
        hook, b"\n$8f3c", **{"Content-Type": "application/octet-stream"}
    )
    assert answer.status_code == 415
    assert answer.json["error"] == (
        "The body is application/octet-stream (Protobuf), not JSON: set the HTTP "
        'integration\'s "Payload encoding" to JSON'
    )


def test_chirpstack_location_is_the_strongest_gateways(hook):
    assert post_chirpstack(hook, capture("chirpstack_up.json")).status_code == 200
    app = hook.application
    admin = "admin-token-for-exact-locations"
    app.config["CO2LOGSERVER_ADMIN_TOKENS"] = [admin]
    [sensor] = hook.get(
        f"/v1/sensors?alias={ELSYS}", headers={"Authorization": f"Bearer {admin}"}
    ).json["sensors"]
    # rxInfo[1] (-88 dBm) beats rxInfo[0] (-104 dBm).
    assert sensor["location"] == {
        "latitude": 48.77585,
        "longitude": 9.18293,
        "elevation": 282,
    }


def test_rate_limit_counts_per_device_not_per_network_server(any_db_app):
    app = any_db_app(
        LORAWAN_WEBHOOK_SECRETS=[SECRET],
        RATELIMIT_ENABLED=True,
        RATELIMIT_SENSOR="2 per minute",
        RATELIMIT_ADDRESS="1 per minute",
    )
    client = app.test_client()
    secret = {"X-Webhook-Secret": SECRET}
    # Two uplinks of one device, one through each server: the per-address limit
    # (1 per minute) would have refused the second; it does not apply here.
    assert post_ttn(client, capture("ttn_uplink.json")).status_code == 200
    assert (
        post_chirpstack(client, capture("chirpstack_up.json"), **secret).status_code
        == 200
    )
    # The third of the same device, on either server, is over its limit.
    later = ttn_with(rx_metadata=[{"time": "2026-11-30T10:51:07Z"}])
    refused = post_ttn(client, later)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "CO2LOGSERVER_RATELIMIT_SENSOR" in refused.json["error"]
    assert (
        post_chirpstack(client, capture("chirpstack_up.json"), **secret).status_code
        == 429
    )
    assert len(stored(client, ELSYS)) == 10
    # Another device behind the same network server still gets through.
    assert post_ttn(client, capture("ttn_uplink_decentlab.json")).status_code == 200


@pytest.mark.parametrize(
    ("value", "problem"),
    (
        ("secret", "list of strings"),
        ([""], "empty secret"),
        (["ok", "  "], "empty secret"),
    ),
)
def test_secrets_must_be_a_list_of_non_empty_strings(
    build_app, db_path, value, problem
):
    from co2logserver.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        build_app({"DB": db_path, "LORAWAN_WEBHOOK_SECRETS": value})


def test_oversized_uplink_is_413_and_stores_nothing(any_db_app):
    app = any_db_app(LORAWAN_WEBHOOK_SECRETS=[SECRET], MAX_CONTENT_LENGTH=1024)
    client = app.test_client()
    assert post_ttn(client, capture("ttn_uplink.json")).status_code == 413
    assert nothing_stored(client)


# --- the parts as pure functions, and generated payloads -------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    (
        ("2026-11-30T10:21:07.671263933Z", ELSYS_TTN_TS),
        ("2026-11-30T10:21:07Z", ELSYS_TTN_TS),
        ("2026-11-30t10:21:07.9z", ELSYS_TTN_TS),
        ("2026-11-30T10:21:07.999999999+00:00", ELSYS_TTN_TS),
        ("2026-11-30T12:21:07.5+02:00", ELSYS_TTN_TS),
        ("2026-11-30T05:51:07-04:30", ELSYS_TTN_TS),
        ("2016-12-31T23:59:60Z", 1483228799),  # a leap second counts as :59
    ),
)
def test_rfc3339_times_become_whole_unix_seconds(text, seconds):
    assert lorawan.rfc3339_seconds(text, "t") == seconds


@pytest.mark.parametrize(
    "text",
    ("2026-11-30", "2026-11-30T10:21:07", "2026-02-30T10:21:07Z", 1796034067, None),
)
def test_what_is_not_an_rfc3339_time_is_refused_naming_the_field(text):
    with pytest.raises(BadRequest, match="^uplink_message.received_at "):
        lorawan.rfc3339_seconds(text, "uplink_message.received_at")


JSON_LEAVES = st.none() | st.booleans() | st.floats() | st.integers() | st.text()
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=70), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    """One app for all examples: SQLite with durability off, both secrets."""
    from co2logserver import create_app

    db = str(tmp_path_factory.mktemp("lorawan-fuzz") / "fuzz.sqlite")
    app = create_app(
        {
            "DB": db,
            "RATELIMIT_ENABLED": False,
            "SQLITE_SYNCHRONOUS": "OFF",
            "LORAWAN_WEBHOOK_SECRETS": [SECRET, OTHER_SECRET],
        }
    )
    yield app.test_client()
    from co2logserver.store import get_store

    get_store(app).dispose()


@settings(max_examples=80, deadline=None, database=None)
@given(payload=JSON_VALUES, where=st.sampled_from(["decoded_payload", "object"]))
def test_generated_payloads_get_a_2xx_or_a_4xx_never_a_5xx(fuzz_client, payload, where):
    if where == "decoded_payload":
        body = ttn_with(decoded_payload=payload) if payload is not None else b"{}"
        answer = post_ttn(fuzz_client, body)
    else:
        answer = post_chirpstack(fuzz_client, chirpstack_with(object=payload))
    assert answer.status_code in (200, 400), answer.data
    assert answer.status_code == 200 or isinstance(answer.json["error"], str)


@settings(max_examples=60, deadline=None, database=None)
@given(location=JSON_VALUES)
def test_generated_locations_get_a_2xx_or_a_4xx_never_a_5xx(fuzz_client, location):
    user = ttn_with(locations={"user": location})
    gateways = chirpstack_with(rxInfo=[{"rssi": -90, "location": location}])
    for answer in (post_ttn(fuzz_client, user), post_chirpstack(fuzz_client, gateways)):
        assert answer.status_code in (200, 400), answer.data


@pytest.mark.parametrize(
    "location",
    (
        {"latitude": 48.1, "longitude": 9.2, "altitude": 10**400},
        {"latitude": 48.1, "longitude": 9.2, "altitude": "high"},
        {"latitude": 10**400, "longitude": 9.2},
        {"latitude": "48.1", "longitude": 9.2},
    ),
)
def test_bad_coordinates_are_refused_naming_them(hook, location):
    answer = post_ttn(hook, ttn_with(locations={"user": location}))
    assert answer.status_code == 400
    assert answer.json["error"].startswith("uplink_message.locations.user.")
    assert len(answer.json["error"]) < 200
    assert nothing_stored(hook)


@settings(max_examples=60, deadline=None, database=None)
@given(document=JSON_VALUES)
def test_generated_whole_bodies_never_get_a_5xx(fuzz_client, document):
    body = json.dumps(document).encode()
    for answer in (post_ttn(fuzz_client, body), post_chirpstack(fuzz_client, body)):
        assert answer.status_code in (200, 400), answer.data

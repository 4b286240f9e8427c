"""The owner's pages (SPEC §12): location by lat/lon and by address (a stand-in
Nominatim on 127.0.0.1), privacy of the exact position, names, rejected requests."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from markupsafe import escape

from co2logserver import accounts
from co2logserver.forwarding.worker import OutboxForwarder
from co2logserver.store import get_store
from tests.conftest import SensorActions, observations
from tests.test_accounts import PASSWORD, Owner, page_error

EXACT = {"latitude": 48.521234, "longitude": 9.057891}
ADMIN = "admin-token-for-tests"


class Claimed:
    """A signed-in owner with one claimed secure sensor."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.owner = Owner(self.client)
        self.sensors = SensorActions(app.test_client())
        self.suid = self.sensors.new_suid()
        self.secret = self.sensors.register(self.suid)
        assert self.owner.sign_up().status_code == 302
        code = accounts.claim_code(self.secret)
        assert self.owner.claim(self.suid, code).status_code == 302
        self.page = f"/my/sensors/{self.suid}"

    def post(self, **fields):
        return self.owner.post_form(self.page, **fields)

    def set_position(self, latitude, longitude, elevation=""):
        return self.post(
            action="position",
            latitude=str(latitude),
            longitude=str(longitude),
            elevation=str(elevation),
        )

    def public_outputs(self) -> str:
        """Everything the public can read about the sensor, concatenated."""
        anyone = self.app.test_client()
        return "\n".join(
            anyone.get(path).get_data(as_text=True)
            for path in (
                "/v1/sensors",
                f"/v1/sensors/{self.suid}",
                "/sensors",
                f"/sensors/{self.suid}",
                "/map",
            )
        )

    def exact(self) -> tuple:
        with get_store(self.app).reading() as conn:
            return tuple(
                conn.exec_driver_sql(
                    "SELECT latitude, longitude, elevation FROM sensors"
                ).one()
            )


@pytest.fixture
def claimed(any_db_app) -> Claimed:
    """On SQLite and on PostgreSQL."""
    return Claimed(any_db_app(ADMIN_TOKENS=[ADMIN]))


def public_location(app, suid):
    return app.test_client().get(f"/v1/sensors/{suid}").get_json()["location"]


def test_position_by_lat_lon_is_exact_for_the_owner_rounded_for_the_public(claimed):
    response = claimed.set_position(EXACT["latitude"], EXACT["longitude"], 312.4)
    assert response.status_code == 302
    assert claimed.exact() == (EXACT["latitude"], EXACT["longitude"], 312.4)
    page = claimed.client.get(claimed.page).get_data(as_text=True)
    assert "48.521234, 9.057891, 312.4 m" in page
    assert "48.52, 9.06 (rounded)" in page
    public = claimed.public_outputs()
    assert "48.52" in public and "9.06" in public
    assert "48.521234" not in public and "9.057891" not in public
    assert public_location(claimed.app, claimed.suid) == {
        "latitude": 48.52,
        "longitude": 9.06,
        "elevation": 312,
    }


@pytest.mark.parametrize(
    ("latitude", "longitude", "elevation", "message"),
    [
        ("91", "9", "", "latitude must be between -90 and 90"),
        ("48", "-180.5", "", "longitude must be between -180 and 180"),
        ("north", "9", "", "latitude must be a number"),
        ("nan", "9", "", "latitude must be between"),
        ("48", "inf", "", "longitude must be between"),
        ("48", "9", "high", "elevation must be a number"),
        ("48", "9", "1e9", "elevation must be between"),
    ],
)
def test_bad_positions_are_named_and_nothing_is_stored(
    claimed, latitude, longitude, elevation, message
):
    claimed.set_position(1.5, 2.5)
    response = claimed.set_position(latitude, longitude, elevation)
    assert response.status_code == 400
    assert message in page_error(response)
    assert claimed.exact() == (1.5, 2.5, None)


def test_decimal_comma_is_accepted(claimed):
    assert claimed.set_position("48,5", "9,25").status_code == 302
    assert claimed.exact()[:2] == (48.5, 9.25)


def test_hidden_location_leaves_every_public_output(claimed):
    claimed.set_position(EXACT["latitude"], EXACT["longitude"])
    response = claimed.post(action="profile", name="Garden")  # box unticked
    assert response.status_code == 302
    assert public_location(claimed.app, claimed.suid) is None
    public = claimed.public_outputs()
    assert "48.52" not in public and "9.06" not in public
    assert "Garden" in public  # the name stays public
    admin = claimed.app.test_client().get(
        f"/v1/sensors/{claimed.suid}", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert admin.get_json()["location"]["latitude"] == EXACT["latitude"]
    forwarder = OutboxForwarder(get_store(claimed.app), claimed.app.config)
    assert forwarder.location(claimed.suid) is None  # the default hooks give none
    claimed.post(action="profile", name="Garden", location_public="on")
    assert public_location(claimed.app, claimed.suid)["latitude"] == 48.52
    assert forwarder.location(claimed.suid) == (48.52, 9.06, None)


def test_owner_position_outlives_the_device_reregistering(claimed):
    claimed.set_position(EXACT["latitude"], EXACT["longitude"])
    metadata = {"model": "AQ-2", "location": {"latitude": 1.0, "longitude": 2.0}}
    claimed.sensors.register(claimed.suid, metadata, secret=claimed.secret)
    assert claimed.exact()[:2] == (EXACT["latitude"], EXACT["longitude"])


def test_other_peoples_sensors_are_not_found_admins_see_them(claimed):
    mallory = Owner(claimed.app.test_client())
    mallory.sign_up("mallory")
    assert mallory.client.get(claimed.page).status_code == 404
    token = mallory.token("/claim")
    response = mallory.client.post(
        claimed.page,
        data={
            "csrf_token": token,
            "action": "position",
            "latitude": "1",
            "longitude": "1",
        },
    )
    assert response.status_code == 404
    assert claimed.exact()[0] is None
    assert mallory.client.get("/my/sensors/not-a-suid").status_code == 404
    accounts.create_user(get_store(claimed.app), "root", PASSWORD, is_admin=True)
    admin = Owner(claimed.app.test_client())
    admin.sign_in("root")
    assert admin.client.get(claimed.page).status_code == 200


def test_script_bearing_names_are_escaped_everywhere(claimed):
    name = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    assert claimed.post(action="profile", name=name, location_public="on").status_code
    claimed.set_position(10, 20)
    pages = [
        claimed.client.get(claimed.page).get_data(as_text=True),
        claimed.client.get("/my/sensors").get_data(as_text=True),
        claimed.public_outputs(),
    ]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
    assert str(escape(name)) in pages[0]
    assert str(escape(name)) in pages[2]


def test_oversized_name_is_refused(claimed):
    response = claimed.post(action="profile", name="x" * 81)
    assert response.status_code == 400 and "at most 80" in page_error(response)


# ----------------------------------------------------------------- geocoder


class Nominatim:
    """A stand-in Nominatim on 127.0.0.1: answers, fails or hangs as told."""

    def __init__(self):
        self.mode = "ok"
        self.queries: list[str] = []
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                stand_in.queries.append(self.path)
                if stand_in.mode == "hang":
                    stand_in.release.wait(10)
                    return
                if stand_in.mode == "fail":
                    self.send_error(500)
                    return
                results = []
                if stand_in.mode == "ok":
                    results = [
                        {
                            "lat": "52.5170365",
                            "lon": "13.3888599",
                            "display_name": "Berlin",
                        }
                    ]
                body = json.dumps(results).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nominatim():
    server = Nominatim()
    yield server
    server.stop()


@pytest.fixture
def geocoded(make_app, nominatim) -> Claimed:
    app = make_app(GEOCODER_URL=nominatim.url, GEOCODER_TIMEOUT=0.5)
    return Claimed(app)


ADDRESS = "Unter den Linden 1, Berlin"


def test_address_is_geocoded_cached_and_kept_private(geocoded, nominatim):
    response = geocoded.post(action="address", address=ADDRESS)
    assert response.status_code == 302
    assert geocoded.exact() == (52.5170365, 13.3888599, None)
    assert "q=Unter+den+Linden" in nominatim.queries[0]
    assert "format=jsonv2" in nominatim.queries[0]
    page = geocoded.client.get(geocoded.page).get_data(as_text=True)
    assert ADDRESS in page
    public = geocoded.public_outputs()
    assert "Unter den Linden" not in public and "52.5170365" not in public
    assert "52.52" in public
    geocoded.post(action="address", address="  unter den  LINDEN 1, berlin ")
    assert len(nominatim.queries) == 1  # the cache answered


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("fail", "answered HTTP 500"),
        ("hang", "did not answer in time"),
        ("empty", "found no such address"),
    ],
)
def test_geocoder_failures_say_so_and_store_nothing(geocoded, nominatim, mode, message):
    geocoded.set_position(1.5, 2.5)
    nominatim.mode = mode
    started = time.monotonic()
    response = geocoded.post(action="address", address=ADDRESS)
    assert time.monotonic() - started < 8  # bounded by the timeout, not the hang
    assert response.status_code == 502
    assert message in page_error(response)
    assert geocoded.exact() == (1.5, 2.5, None)
    page = geocoded.client.get(geocoded.page).get_data(as_text=True)
    assert ADDRESS not in page


def test_geocoder_off_by_default(claimed):
    page = claimed.client.get(claimed.page).get_data(as_text=True)
    assert 'id="address-form"' not in page
    response = claimed.post(action="address", address=ADDRESS)
    assert response.status_code == 502 and "off" in page_error(response)


def test_oversized_address_is_refused(geocoded, nominatim):
    response = geocoded.post(action="address", address="x" * 301)
    assert response.status_code == 400 and "at most 300" in page_error(response)
    assert nominatim.queries == []


# -------------------------------------------------------- status, rejections


def test_my_sensors_shows_status_and_rejected_requests(claimed):
    now = int(time.time())
    body = observations(now - 60, now - 30)
    assert claimed.sensors.post(claimed.suid, body, secret=claimed.secret).status_code
    wrong = claimed.sensors.post(claimed.suid, body, secret="0" * 64)
    assert wrong.status_code == 401
    unsigned = claimed.sensors.post(claimed.suid, b'[{"timestamp": 1}]')
    assert unsigned.status_code == 403
    claimed.sensors.post_rogue(claimed.sensors.new_suid(), b"not json")
    page = claimed.client.get("/my/sensors").get_data(as_text=True)
    assert 'class="readings-today">4<' in page  # 2 timestamps x 2 types
    assert page.count('class="num status">401<') == 1
    assert page.count('class="num status">403<') == 1
    assert str(escape(wrong.get_json()["error"])) in page
    assert "OpenSmog readings (/v1)" in page
    assert claimed.secret not in page
    with get_store(claimed.app).reading() as conn:
        rows = conn.exec_driver_sql(
            "SELECT suid, message, excerpt FROM rejected_requests"
        ).all()
    assert {row[0] for row in rows} == {claimed.suid}  # unknown SUIDs: nothing
    assert all(claimed.secret not in " ".join(map(str, row)) for row in rows)


def test_rejected_requests_are_bounded_per_sensor(claimed):
    for i in range(25):
        claimed.sensors.post(claimed.suid, observations(i + 1), secret="0" * 64)
    with get_store(claimed.app).reading() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM rejected_requests").scalar()
        excerpt = conn.exec_driver_sql(
            "SELECT excerpt FROM rejected_requests ORDER BY id DESC"
        ).first()[0]
    assert count == 20
    assert excerpt.startswith('[{"timestamp": 25') and len(excerpt) <= 120


def test_sign_in_page_when_signed_out(make_app):
    client = make_app().test_client()
    for path in ("/my/sensors", "/claim", f"/my/sensors/{SensorActions.new_suid()}"):
        response = client.get(path)
        assert response.status_code == 302 and "/signin?next=" in response.location


def test_noting_a_refusal_never_fails_and_pauses_while_the_database_is_away(
    build_app,
):
    from co2logserver import rejected

    app = build_app({"DB": "postgresql+psycopg://nobody:x@127.0.0.1:1/none"})
    rejected.note(get_store(app), SensorActions.new_suid(), 400, "test", "bad", b"x")
    assert rejected._paused_until > time.monotonic()  # the next ones skip the DB
    rejected._paused_until = 0.0


@pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sessions_hold_across_gunicorn_workers_and_restarts(tmp_path, request, db):
    """The generated key lives in the database: every worker, and the next start,
    accepts the cookie another one signed."""
    import requests

    from tests.appserver import GunicornServer

    url = str(tmp_path / "co2.sqlite")
    if db == "postgres":
        url = request.getfixturevalue("pg_database_url")
    settings = {"DB": url, "RATELIMIT_ENABLED": "False"}
    session = requests.Session()
    with GunicornServer(tmp_path, settings, workers=3) as server:
        page = session.get(server.url + "/signup", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
        fields = {"csrf_token": token, "username": "worker", "password": PASSWORD}
        answer = session.post(server.url + "/signup", data=fields, timeout=10)
        assert answer.status_code == 200 and answer.url.endswith("/claim")
        for _ in range(20):  # round robin over the workers
            page = session.get(server.url + "/my/sensors", timeout=10)
            assert page.status_code == 200 and "You own no sensor" in page.text
    with GunicornServer(tmp_path, settings, workers=2) as server:
        page = session.get(server.url + "/my/sensors", timeout=10)
        assert page.status_code == 200, "the session ended with the restart"


# ------------------------------------------------- claim and place in one step


def one_step_claim(make_app, username="alice", **config):
    app = make_app(**config)
    sensors = SensorActions(app.test_client())
    suid = sensors.new_suid()
    code = accounts.claim_code(sensors.register(suid))
    owner = Owner(app.test_client())
    owner.sign_up(username)
    return app, owner, suid, code


def owners_of(app) -> list:
    with get_store(app).reading() as conn:
        return conn.exec_driver_sql("SELECT suid FROM sensor_owners").scalars().all()


def test_claim_with_lat_lon_in_one_step(make_app):
    app, owner, suid, code = one_step_claim(make_app)
    response = owner.claim_with(suid, code, latitude="48.521234", longitude="9.057891")
    assert response.status_code == 302
    page = owner.client.get(response.location).get_data(as_text=True)
    assert "Location saved." in page and "48.521234, 9.057891" in page


def test_claim_with_a_bad_position_claims_nothing(make_app):
    app, owner, suid, code = one_step_claim(make_app)
    response = owner.claim_with(suid, code, latitude="95", longitude="9")
    assert response.status_code == 400
    assert "latitude must be between" in page_error(response)
    assert owners_of(app) == []
    assert f'value="{suid}"' in response.get_data(as_text=True)  # kept for retry


def test_claim_with_an_address_the_geocoder_cannot_find(make_app, nominatim):
    nominatim.mode = "empty"
    app, owner, suid, code = one_step_claim(make_app, GEOCODER_URL=nominatim.url)
    response = owner.claim_with(suid, code, address="Nowhere 1")
    assert response.status_code == 302 and owners_of(app) == [suid]
    page = owner.client.get(response.location).get_data(as_text=True)
    assert "The location was not saved: The geocoder found no such address" in page
    nominatim.mode = "ok"
    app, owner, suid, code = one_step_claim(make_app, "bob", GEOCODER_URL=nominatim.url)
    owner.claim_with(suid, code, address="Unter den Linden 1")
    with get_store(app).reading() as conn:
        row = conn.exec_driver_sql(
            "SELECT latitude FROM sensors WHERE suid = ?", (suid,)
        ).one()
    assert row[0] == 52.5170365

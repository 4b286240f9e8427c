"""Owner accounts and claims (SPEC §12) over the Flask test client, real SQLite
(and PostgreSQL for the claim race), with real CSRF tokens and cookies."""

from __future__ import annotations

import logging
import re
import runpy
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from co2logserver import accounts, create_app
from co2logserver.cli import main
from co2logserver.errors import ConfigError, Forbidden
from co2logserver.store import get_store
from tests.conftest import SensorActions, observations

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Owner:
    """A browser-like client: fetches each form, posts it with its CSRF token."""

    def __init__(self, client):
        self.client = client

    def token(self, path: str) -> str:
        page = self.client.get(path)
        assert page.status_code == 200, page.status_code
        return TOKEN.search(page.get_data(as_text=True))[1]

    def post_form(self, path: str, **fields):
        return self.client.post(path, data={"csrf_token": self.token(path), **fields})

    def sign_up(self, username="alice", password=PASSWORD, **fields):
        return self.post_form("/signup", username=username, password=password, **fields)

    def sign_in(self, username="alice", password=PASSWORD):
        return self.post_form("/signin", username=username, password=password)

    def claim(self, suid: str, code: str):
        return self.post_form("/claim", suid=suid, code=code)

    def claim_with(self, suid: str, code: str, **place):
        return self.post_form("/claim", suid=suid, code=code, **place)


@pytest.fixture
def owner(client) -> Owner:
    return Owner(client)


def page_error(response) -> str:
    found = re.search(r'id="form-error"[^>]*>([^<]*)<', response.get_data(as_text=True))
    return found[1] if found else ""


# ------------------------------------------------------------- claim code rule


@pytest.mark.parametrize(
    ("secret", "code"),
    [
        ("0123456789abcdef" * 4, "d91afe21a6"),
        ("0" * 64, accounts.claim_code("0" * 64)),
    ],
)
def test_claim_code_is_the_spec_rule(secret, code):
    assert accounts.claim_code(secret) == code
    assert re.fullmatch(r"[0-9a-f]{10}", accounts.claim_code(secret))


def test_issued_codes_have_the_claim_code_shape_and_are_stored_hashed(app, sensors):
    suid = sensors.new_suid()
    sensors.post_rogue(suid, observations(1_700_000_000))
    code = accounts.issue_claim_code(get_store(app), suid)
    assert re.fullmatch(r"[0-9a-f]{10}", code)
    with get_store(app).reading() as conn:
        stored = conn.exec_driver_sql("SELECT code_hash FROM claim_codes").scalar()
    assert stored == accounts.code_hash(code) and code not in stored


# ----------------------------------------------------------------- accounts


def test_sign_up_signs_in_and_sign_out_ends_the_session(client, owner):
    response = owner.sign_up()
    assert response.status_code == 302 and response.location.endswith("/claim")
    assert client.get("/my/sensors").status_code == 200
    client.post("/signout", data={"csrf_token": owner.token("/claim")})
    response = client.get("/my/sensors")
    assert response.status_code == 302 and "/signin" in response.location


def test_password_is_hashed_with_argon2(app, owner):
    owner.sign_up()
    with get_store(app).reading() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("al", PASSWORD, "3 to 254 characters"),
        ("has space", PASSWORD, "without spaces"),
        ("bob", "short", "10 to 1024"),
    ],
)
def test_sign_up_names_what_is_wrong(owner, username, password, message):
    response = owner.sign_up(username, password)
    assert response.status_code == 400
    assert message in page_error(response)


def test_a_taken_name_is_refused_case_insensitively(owner, client, app):
    owner.sign_up("Alice")
    client.post("/signout", data={"csrf_token": owner.token("/claim")})
    response = owner.sign_up("ALICE ")
    assert response.status_code == 400 and "taken" in page_error(response)


def test_sign_up_off_and_by_invitation(make_app):
    app = make_app(SIGNUP="off")
    owner = Owner(app.test_client())
    assert b"Sign-up is off" in owner.client.get("/signup").data
    owner.token("/signin")  # a session with a token, posted to /signup:
    response = owner.client.post(
        "/signup",
        data={
            "csrf_token": owner.token("/signin"),
            "username": "eve",
            "password": PASSWORD,
        },
    )
    assert b"Sign-up is off" in response.data
    with get_store(app).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0
    app = make_app(SIGNUP="invitation")
    code = accounts.invite(get_store(app))
    owner = Owner(app.test_client())
    response = owner.sign_up(invitation="wrong")
    assert response.status_code == 403 and "invitation" in page_error(response)
    assert owner.sign_up(invitation=code).status_code == 302
    # The failed attempt left no account behind; the code works once.
    with get_store(app).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM users").scalar() == 1
    other = Owner(app.test_client())
    assert other.sign_up("bob", invitation=code).status_code == 403


def test_unknown_signup_mode_stops_the_start(make_app):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_SIGNUP"):
        make_app(SIGNUP="maybe")


def test_wrong_password_and_unknown_user_get_one_message(app, owner, client):
    owner.sign_up()
    client.post("/signout", data={"csrf_token": owner.token("/claim")})
    wrong = owner.sign_in(password="not the password")
    unknown = owner.sign_in(username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert page_error(wrong) == page_error(unknown) == accounts.SIGNIN_REFUSED
    assert owner.sign_in().status_code == 302


def test_disabled_account_and_password_reset_end_sessions(app, owner, client):
    owner.sign_up()
    store = get_store(app)
    accounts.reset_password(store, "alice", "another long password")
    assert client.get("/my/sensors").status_code == 302  # the old session ended
    assert owner.sign_in(password="another long password").status_code == 302
    accounts.set_disabled(store, "alice", True)
    assert client.get("/my/sensors").status_code == 302
    response = owner.sign_in(password="another long password")
    assert response.status_code == 401


def test_sign_in_brute_force_gets_429(make_app):
    app = make_app(RATELIMIT_SIGNIN="3 per minute")
    owner = Owner(app.test_client())
    statuses = [owner.sign_in(password=f"guess {i}").status_code for i in range(3)]
    assert statuses == [401, 401, 401]
    response = owner.sign_in()
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    # Per account too: another address guessing the same account is refused.
    other = Owner(app.test_client())
    response = other.client.post(
        "/signin",
        data={
            "csrf_token": other.token("/signin"),
            "username": "alice",
            "password": "x",
        },
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert response.status_code == 429


def test_forms_without_csrf_token_are_refused(app, client, owner, sensors):
    for path in ("/signup", "/signin"):
        response = client.post(path, data={"username": "alice", "password": PASSWORD})
        assert response.status_code == 400
        assert b"CSRF" in response.data
    with get_store(app).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0
    owner.sign_up()
    response = client.post("/claim", data={"suid": sensors.new_suid(), "code": "x"})
    assert response.status_code == 400
    # The machine APIs need no token and set no cookie.
    suid = sensors.new_suid()
    response = client.post(f"/rogue/v1/sensors/{suid}/readings", data=observations(1))
    assert response.status_code in (200, 400)
    response = client.put(f"/v1/sensors/{suid}x", json={})
    assert "Set-Cookie" not in response.headers


def test_api_answers_set_no_cookie_and_need_no_session_key(app, sensors, client):
    suid = sensors.new_suid()
    response = client.put(f"/v1/sensors/{suid}", json={})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert app.secret_key is None  # never loaded for the sensor API
    assert client.get("/sensors").status_code == 200
    assert app.secret_key is None


def test_session_key_is_generated_once_and_shared(make_app, owner, client, app):
    owner.sign_up()
    key = app.secret_key
    assert key and len(key) == 64
    second = make_app()
    other = second.test_client()
    cookie = client.get_cookie("co2logserver_session")
    other.set_cookie("co2logserver_session", cookie.value)
    assert other.get("/my/sensors").status_code == 200  # signed alike
    assert second.secret_key == key


def test_configured_secret_key_is_used(make_app):
    app = make_app(SECRET_KEY="k" * 40)
    Owner(app.test_client()).token("/signin")
    assert app.secret_key == "k" * 40
    with get_store(app).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM installation").scalar() == 0


def test_cookie_flags_and_secure_behind_an_https_proxy(make_app):
    app = make_app(TRUSTED_PROXIES=1)
    client = app.test_client()
    plain = client.get("/signin").headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    proxied = client.get("/signin", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in proxied.headers["Set-Cookie"]


def test_next_after_sign_in_stays_on_this_site(app, owner, client):
    owner.sign_up()
    client.post("/signout", data={"csrf_token": owner.token("/claim")})
    token = owner.token("/signin")
    response = client.post(
        "/signin?next=//evil.example/x",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
    )
    assert response.location.endswith("/my/sensors")


# -------------------------------------------------------------------- claims


@pytest.fixture
def secure_sensor(sensors):
    suid = sensors.new_suid()
    return suid, sensors.register(suid)


def test_claim_with_the_derived_code(owner, secure_sensor, client, caplog):
    caplog.set_level(logging.DEBUG)
    suid, secret = secure_sensor
    owner.sign_up()
    code = accounts.claim_code(secret)
    response = owner.claim(suid.upper(), f" {code.upper()} ")
    assert response.status_code == 302 and response.location.endswith(suid)
    page = client.get("/my/sensors").get_data(as_text=True)
    assert suid in page and code not in page and secret not in page
    assert code not in caplog.text and secret not in caplog.text


def test_every_failed_claim_gets_one_message(app, owner, secure_sensor, sensors):
    suid, secret = secure_sensor
    owner.sign_up()
    code = accounts.claim_code(secret)
    accounts.create_user(get_store(app), "bob", PASSWORD)
    taken = sensors.new_suid()
    taken_code = accounts.claim_code(sensors.register(taken))
    bob = Owner(app.test_client())
    bob.sign_in("bob")
    assert bob.claim(taken, taken_code).status_code == 302
    attempts = [
        (suid, "0000000000"),  # wrong code
        (sensors.new_suid(), code),  # unknown SUID
        ("not-a-suid", code),  # malformed SUID
        (suid, ""),  # no code
        (taken, taken_code),  # owned by bob
    ]
    answers = {
        (r.status_code, page_error(r)) for r in (owner.claim(*a) for a in attempts)
    }
    assert answers == {(403, accounts.CLAIM_REFUSED)}
    with get_store(app).reading() as conn:
        owners = dict(
            conn.exec_driver_sql("SELECT suid, user_id FROM sensor_owners").all()
        )
    assert list(owners) == [taken]


def test_old_secret_code_stops_working_after_reregistration(
    make_app, owner, secure_sensor, sensors
):
    suid, secret = secure_sensor
    owner.sign_up()
    new_secret = sensors.register(suid, secret=secret)
    assert owner.claim(suid, accounts.claim_code(secret)).status_code == 403
    assert owner.claim(suid, accounts.claim_code(new_secret)).status_code == 302


def test_operator_code_claims_a_rogue_sensor_once(app, owner, sensors):
    suid = sensors.new_suid()
    assert sensors.post_rogue(suid, observations(1_700_000_000)).status_code == 200
    owner.sign_up()
    assert owner.claim(suid, "0123456789").status_code == 403
    code = accounts.issue_claim_code(get_store(app), suid)
    assert owner.claim(suid, code).status_code == 302
    with get_store(app).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM claim_codes").scalar() == 0


def test_claim_attempts_are_rate_limited(make_app, secure_sensor):
    app = make_app(RATELIMIT_CLAIM="2 per minute")
    owner = Owner(app.test_client())
    owner.sign_up()
    suid, _secret = secure_sensor
    assert [owner.claim(suid, "0" * 10).status_code for _ in range(2)] == [403, 403]
    response = owner.claim(suid, "0" * 10)
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_claim_race_has_one_winner(any_db_app):
    app = any_db_app()
    store = get_store(app)
    suid = SensorActions(app.test_client()).new_suid()
    secret = SensorActions(app.test_client()).register(suid)
    users = [accounts.create_user(store, f"racer{i}", PASSWORD) for i in range(2)]
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}

    def race(user_id):
        barrier.wait()
        try:
            accounts.claim(store, user_id, suid, accounts.claim_code(secret))
            results[user_id] = "won"
        except Forbidden as error:
            results[user_id] = error.message

    threads = [threading.Thread(target=race, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results.values()) == sorted(["won", accounts.CLAIM_REFUSED])


# ---------------------------------------------------------------------- CLI


def cli(db, *args, input=None):
    result = CliRunner().invoke(main, ["-f", str(db), *args], input=input)
    return result.exit_code, result.output


def test_operator_commands(db_path, sensors, build_app):
    app = build_app({"DB": db_path})
    actions = SensorActions(app.test_client())
    suid = actions.new_suid()
    actions.post_rogue(suid, observations(1_700_000_000))
    assert cli(db_path, "create-user", "Carol", "--password", PASSWORD)[0] == 0
    assert (
        cli(db_path, "create-user", "dave", "--admin", "--password", PASSWORD)[0] == 0
    )
    code, output = cli(db_path, "create-user", "carol", "--password", PASSWORD)
    assert code == 1 and "taken" in output
    code, output = cli(db_path, "claim-code", suid)
    assert code == 0 and re.fullmatch(r"[0-9a-f]{10}\n", output)
    claim_code = output.strip()
    code, output = cli(db_path, "claim-code", actions.new_suid())
    assert code == 1 and "no sensor" in output
    store = get_store(app)
    carol = accounts.authenticate(store, "carol", PASSWORD)
    assert accounts.claim(store, carol.id, suid, claim_code) == suid
    code, output = cli(db_path, "transfer-sensor", suid, "dave")
    assert code == 0, output
    dave = accounts.authenticate(store, "dave", PASSWORD)
    assert dave.is_admin
    with store.reading() as conn:
        owner = conn.exec_driver_sql("SELECT user_id FROM sensor_owners").scalar()
    assert owner == dave.id
    assert cli(db_path, "reset-password", "carol", "--password", "x" * 12)[0] == 0
    assert accounts.authenticate(store, "carol", "x" * 12) is not None
    assert cli(db_path, "disable-user", "carol")[0] == 0
    assert accounts.authenticate(store, "carol", "x" * 12) is None
    assert cli(db_path, "disable-user", "nobody")[0] == 1
    code, output = cli(db_path, "invite")
    assert code == 0 and len(output.strip()) >= 16


def test_create_app_still_starts_with_no_new_setting(tmp_path):
    app = create_app({"DB": str(tmp_path / "x.sqlite")})
    assert app.config["CO2LOGSERVER_SIGNUP"] == "open"
    get_store(app).dispose()


# ------------------------------------------------ the docs' device examples

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
C_MAIN = """
#include <stdio.h>
#include "opensmog_hash2.h"
int main(int argc, char **argv) {
  char code[11];
  if (argc != 2) return 2;
  opensmog_claim_code(argv[1], code);
  puts(code);
  return 0;
}
"""


def test_python_example_prints_the_servers_claim_code():
    example = runpy.run_path(str(EXAMPLES / "opensmog_sensor.py"))
    for secret in ("0123456789abcdef" * 4, "ab" * 32):
        assert example["claim_code"](secret) == accounts.claim_code(secret)


def test_c_example_computes_the_servers_claim_code(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler (install gcc)")
    source = EXAMPLES / "opensmog_hash2"
    (tmp_path / "main.c").write_text(C_MAIN)
    program = tmp_path / "claim"
    subprocess.run(
        [compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{source}",
         str(tmp_path / "main.c"), str(source / "opensmog_hash2.c"),
         "-o", str(program)],
        check=True,
    )  # fmt: skip
    for secret in ("0123456789abcdef" * 4, "5f4dcc3b5aa765d6" * 4):
        result = subprocess.run(
            [str(program), secret], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == accounts.claim_code(secret)


def test_esp32_sketches_print_the_claim_code():
    for sketch in (
        "esp32_opensmog/esp32_opensmog.ino",
        "arduino_mqtt/arduino_mqtt.ino",
    ):
        text = (EXAMPLES / sketch).read_text(encoding="utf-8")
        assert '"claim:"' in text and "claim code" in text


def test_racing_workers_agree_on_one_session_key(any_db_app):
    """Workers that start together each generate a key; the first stored wins."""
    apps = [any_db_app() for _ in range(4)]
    for app in apps:
        get_store(app).ensure_schema()
    barrier = threading.Barrier(len(apps))
    keys: list[str] = []

    def first_use(app):
        barrier.wait()
        keys.append(accounts.session_key(get_store(app)))

    threads = [threading.Thread(target=first_use, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(keys) == len(apps) and len(set(keys)) == 1
    with get_store(apps[0]).reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM installation").scalar() == 1


def test_owner_pages_answer_503_while_the_database_is_away(build_app):
    app = build_app({"DB": "postgresql+psycopg://nobody:x@127.0.0.1:1/none"})
    response = app.test_client().get("/signin")
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert b"database is unavailable" in response.data

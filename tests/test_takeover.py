"""SUIDs are public: an unsigned PUT must not take a secure sensor over (SPEC §6).

The attack runs as an attacker on the same network would, over real HTTP against a
real gunicorn: list the sensors, re-register every one, then check whether the real
devices still post verified readings with their SECRETs.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from click.testing import CliRunner

from co2logserver import create_app
from co2logserver.cli import main
from co2logserver.errors import ConfigError
from tests.appserver import GunicornServer
from tests.conftest import SensorActions, observations, opensmog_hash

DEVICES = 5


def register_devices(url: str) -> dict[str, str]:
    """The network before the attack: SUID -> SECRET of each real device."""
    devices = {}
    for _ in range(DEVICES):
        suid = SensorActions.new_suid()
        response = requests.put(f"{url}/v1/sensors/{suid}", json={}, timeout=10)
        assert response.status_code == 200
        devices[suid] = response.text
    return devices


def attack(url: str) -> list[requests.Response]:
    """List every sensor and PUT each one without a signature."""
    listed = requests.get(f"{url}/v1/sensors", timeout=10).json()["sensors"]
    return [
        requests.put(f"{url}/v1/sensors/{s['suid']}", json={}, timeout=10)
        for s in listed
    ]


def device_posts(url: str, suid: str, secret: str) -> int:
    body = observations(int(time.time()) - 5)
    header = {"Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}"}
    return requests.post(
        f"{url}/v1/sensors/{suid}/readings", data=body, headers=header, timeout=10
    ).status_code


def run_attack(tmp_path, **settings) -> tuple[dict, list, dict]:
    env = {"DB": str(tmp_path / "co2.sqlite"), "RATELIMIT_ENABLED": "False"}
    env.update(settings)
    with GunicornServer(tmp_path, env, workers=2) as server:
        devices = register_devices(server.url)
        answers = attack(server.url)
        after = {s: device_posts(server.url, s, k) for s, k in devices.items()}
    return devices, answers, after


def test_unsigned_reregistration_of_every_listed_sensor_fails_by_default(tmp_path):
    devices, answers, after = run_attack(tmp_path)
    assert len(answers) == DEVICES
    assert {a.status_code for a in answers} == {409}
    assert all("reset-sensor" in a.json()["error"] for a in answers)
    assert all(a.text not in devices.values() for a in answers)
    assert after == dict.fromkeys(devices, 200)  # every real device still verified


def test_the_open_setting_still_allows_the_attack(tmp_path):
    """``True`` is documented as unsafe: this is what it allows."""
    devices, answers, after = run_attack(tmp_path, ALLOW_REREGISTRATION="True")
    assert {a.status_code for a in answers} == {200}
    assert after == dict.fromkeys(devices, 401)


def test_the_device_rotates_its_own_secret_with_a_signed_put(app):
    client = app.test_client()
    actions = SensorActions(client)
    suid = actions.new_suid()
    old = actions.register(suid)
    body = json.dumps({"model": "v2"}).encode()
    wrong = client.put(
        f"/v1/sensors/{suid}",
        data=body,
        headers={"Authorization": f"OpenSmogHash {opensmog_hash(body, '0' * 64)}"},
    )
    assert wrong.status_code == 409
    assert "does not match" in wrong.json["error"]
    new = actions.register(suid, {"model": "v2"}, secret=old)
    assert new != old
    assert actions.post(suid, observations(int(time.time())), old).status_code == 401
    assert actions.post(suid, observations(int(time.time())), new).status_code == 200
    assert client.get(f"/v1/sensors/{suid}").json["model"] == "v2"


def test_a_rogue_sensor_and_a_reset_one_register_without_a_signature(app, db_path):
    client = app.test_client()
    actions = SensorActions(client)
    suid = actions.new_suid()
    assert actions.post_rogue(suid, observations(int(time.time()))).status_code == 200
    secret = actions.register(suid)  # rogue so far: no signature needed
    assert client.put(f"/v1/sensors/{suid}", json={}).status_code == 409
    result = CliRunner().invoke(main, ["-f", db_path, "reset-sensor", suid])
    assert result.exit_code == 0, result.output
    assert actions.register(suid) != secret


@pytest.mark.parametrize("value", ["signed", "SIGNED", True, False])
def test_reregistration_setting_takes_three_values(db_path, value):
    app = create_app({"DB": db_path, "ALLOW_REREGISTRATION": value})
    expected = value if isinstance(value, bool) else "signed"
    assert app.config["CO2LOGSERVER_ALLOW_REREGISTRATION"] == expected


@pytest.mark.parametrize("value", ["yes", 1, None, "open"])
def test_other_reregistration_values_stop_the_start(db_path, value):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_ALLOW_REREGISTRATION"):
        create_app({"DB": db_path, "ALLOW_REREGISTRATION": value})

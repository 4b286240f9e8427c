"""``python3 -m co2logserver reset-sensor SUID``: the operator's way out of a 409.

With ``CO2LOGSERVER_ALLOW_REREGISTRATION = False`` a second PUT is refused; the
operator resets the sensor, which may then register again (SPEC §6).
"""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from co2logserver.cli import main
from tests.conftest import SensorActions, observations

T0 = int(time.time()) - 600


@pytest.fixture
def locked(make_app) -> SensorActions:
    """Sensor actions on an app that refuses re-registration."""
    return SensorActions(make_app(ALLOW_REREGISTRATION=False).test_client())


def reset(db_path: str, suid: str):
    """Run the reset command on the test's database file."""
    return CliRunner().invoke(main, ["-f", db_path, "reset-sensor", suid])


def is_secure(api: SensorActions, suid: str) -> bool:
    """Whether the sensor is registered as secure."""
    return api.client.get(f"/v1/sensors/{suid}").get_json()["secure"]


def test_reset_lets_a_sensor_register_again(locked, db_path):
    suid = locked.new_suid()
    old = locked.register(suid)
    assert locked.post(suid, observations(T0), old).status_code == 200
    assert locked.client.put(f"/v1/sensors/{suid}", json={}).status_code == 409

    result = reset(db_path, suid)
    assert result.exit_code == 0, result.output
    assert suid in result.output
    assert old not in result.output

    new = locked.register(suid)
    assert new != old
    assert locked.post(suid, observations(T0 + 1), new).status_code == 200
    assert locked.post(suid, observations(T0 + 2), old).status_code == 401
    readings = locked.client.get(f"/v1/sensors/{suid}/readings").get_json()
    assert [r["verified"] for r in readings["readings"]] == [True] * 4


def test_reset_ends_the_secure_registration_at_once(locked, db_path):
    """Until it registers again, the sensor's readings are unverified (rogue)."""
    suid = locked.new_suid()
    old = locked.register(suid)
    assert reset(db_path, suid).exit_code == 0
    assert is_secure(locked, suid) is False
    assert locked.post(suid, observations(T0)).status_code == 200
    assert locked.post_rogue(suid, observations(T0 + 1)).status_code == 200
    # A hash with the old SECRET is ignored like any header of a rogue sensor.
    assert locked.post(suid, observations(T0 + 2), old).status_code == 200
    readings = locked.client.get(f"/v1/sensors/{suid}/readings").get_json()
    assert {r["verified"] for r in readings["readings"]} == {False}


def test_reset_accepts_an_uppercase_suid(locked, db_path):
    suid = locked.new_suid()
    locked.register(suid)
    result = reset(db_path, suid.upper())
    assert result.exit_code == 0, result.output
    assert is_secure(locked, suid) is False


def test_reset_of_a_rogue_sensor_keeps_it_rogue(locked, db_path):
    suid = locked.new_suid()
    assert locked.post_rogue(suid, observations(T0)).status_code == 200
    assert reset(db_path, suid).exit_code == 0
    assert is_secure(locked, suid) is False
    assert locked.register(suid)


def test_reset_of_an_unknown_sensor_fails(locked, db_path):
    suid = locked.new_suid()
    locked.register(locked.new_suid())
    result = reset(db_path, suid)
    assert result.exit_code == 1
    assert "no sensor" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("suid", ["not-a-uuid", "123e4567e89b12d3a456426655440000"])
def test_reset_of_a_malformed_suid_is_one_clear_line(locked, db_path, suid):
    result = reset(db_path, suid)
    assert result.exit_code == 1
    assert "SUID" in result.output
    assert "Traceback" not in result.output


def test_reset_is_listed_in_the_help():
    result = CliRunner().invoke(main, ["--help"])
    assert "reset-sensor" in result.output
    result = CliRunner().invoke(main, ["reset-sensor", "--help"])
    assert result.exit_code == 0
    assert "SUID" in result.output

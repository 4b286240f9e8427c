"""``age`` instead of ``timestamp`` for devices without a clock (SPEC §6, §11)."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import SensorActions


def body(*observations: dict) -> bytes:
    return json.dumps(list(observations)).encode()


def stored_times(sensors: SensorActions, suid: str) -> list[int]:
    response = sensors.client.get(f"/v1/sensors/{suid}/readings")
    return sorted(r["timestamp"] for r in response.json["readings"])


@pytest.mark.parametrize("route", ["rogue", "secure"])
def test_age_is_counted_back_from_receipt(sensors, route):
    suid = sensors.new_suid()
    payload = body(
        {"age": 0, "readings": {"PM10": 1.0}},
        {"age": 3600, "readings": {"PM10": 2.0}},
        {"age": 90.5, "readings": {"PM10": 3.0}},
    )
    before = time.time()
    if route == "rogue":
        response = sensors.post_rogue(suid, payload)
    else:
        response = sensors.post(suid, payload, sensors.register(suid))
    after = time.time()
    assert response.status_code == 200, response.data
    times = stored_times(sensors, suid)
    assert int(before) - 3600 <= times[0] <= after - 3600
    assert int(before - 90.5) <= times[1] <= after - 90.5
    assert int(before) <= times[2] <= after


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        ({"readings": {"PM10": 1.0}}, "exactly one of timestamp"),
        (
            {"timestamp": int(time.time()), "age": 5, "readings": {"PM10": 1.0}},
            "exactly one of timestamp",
        ),
        ({"age": -1, "readings": {"PM10": 1.0}}, "non-negative"),
        ({"age": "10", "readings": {"PM10": 1.0}}, "age must be a number"),
        ({"age": True, "readings": {"PM10": 1.0}}, "age must be a number"),
        ({"age": 10**12, "readings": {"PM10": 1.0}}, "before 2000-01-01"),
    ],
)
def test_bad_age_is_a_400_naming_the_observation(sensors, observation, message):
    suid = sensors.new_suid()
    good = {"age": 1, "readings": {"PM10": 9.0}}
    response = sensors.post_rogue(suid, body(good, observation))
    assert response.status_code == 400
    error = response.json["error"]
    assert "observation 1" in error and message in error
    assert sensors.client.get(f"/v1/sensors/{suid}").status_code == 404

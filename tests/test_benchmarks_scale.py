"""The scale benchmark's generator builds what it says (issue #18).

At 3 sensors x 1 day: the sensors with their aliases and counters, every reading a
sensor posting PM10, TEMP and HUM every 145 s gives, hourly rollups that hold each
of them once, and the legacy rows; the benchmark then reuses the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import scale  # noqa: E402
from harness import seeding  # noqa: E402

from co2logserver import create_app  # noqa: E402
from co2logserver.store import get_store  # noqa: E402

TINY = scale.Size("tiny", 3, 1, 1_000)


def test_the_generator_builds_sensors_readings_rollups_and_rows(tmp_path):
    info = scale.build(tmp_path / "tiny.sqlite", TINY, log=lambda line: None)

    posts = [len(seeding.post_times(n, info["start"], info["end"])) for n in range(3)]
    assert all(590 <= p <= 596 for p in posts)  # 86400 / 145
    assert info["readings"] == 3 * sum(posts)
    assert info["rollup_rows"] == 3 * 24 * 3  # sensors x hours x quantities
    assert info["rollups_built"] is True
    assert json.loads(Path(f"{tmp_path}/tiny.sqlite.json").read_text()) == info

    app = create_app({"DB": str(tmp_path / "tiny.sqlite"), "SPOOL_DIR": str(tmp_path)})
    with get_store(app).reading() as conn:
        counted = conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM readings),"
            " (SELECT sum(count) FROM rollups_hourly),"
            " (SELECT sum(reading_count) FROM sensors),"
            " (SELECT count(*) FROM data)"
        ).one()
        sensor = conn.exec_driver_sql(
            "SELECT first_ts, last_ts, reading_count FROM sensors WHERE suid = ?",
            (seeding.suid(1),),
        ).one()
    assert tuple(counted) == (info["readings"],) * 3 + (1_000,)
    times = seeding.post_times(1, info["start"], info["end"])
    assert tuple(sensor) == (times[0], times[-1], 3 * len(times))

    client = app.test_client()
    found = client.get("/v1/sensors?alias=esp8266-1").get_json()["sensors"]
    assert [s["suid"] for s in found] == [seeding.suid(1)]
    hourly = client.get(f"/v1/sensors/{seeding.suid(1)}/readings?aggregate=1h")
    buckets = hourly.get_json()["buckets"]
    assert sum(b["count"] for b in buckets) == 3 * len(times)
    get_store(app).dispose()

    again = scale.built(tmp_path, TINY, log=lambda line: None)
    assert again == {**info, "reused": True}

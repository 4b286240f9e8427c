"""The outbox forwarder against the OpenSenseMap stand-in: in process and for real.

In-process tests upload through the app, then drive :class:`OutboxForwarder` one
step at a time (no sleeping), so outages, refusals and lease handovers happen
exactly where the test puts them. End-to-end tests run ``gunicorn -w 2`` and
``python3 -m co2logserver forward`` as processes. sensemapi is never mocked:
everything goes over HTTP to :class:`tests.osem_standin.OsemStandin`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, text

from co2logserver.forwarding import EXTENSION, process
from co2logserver.forwarding import worker as forwarder_module
from co2logserver.forwarding.lease import Backoff
from co2logserver.forwarding.worker import OutboxForwarder
from co2logserver.store import get_store, outbox
from co2logserver.store.schema import outbox as outbox_table
from tests.appserver import GunicornServer
from tests.conftest import SensorActions, observations, opensmog_hash
from tests.osem_standin import OsemStandin
from tests.processes import in_a_forked_child, open_files

BASE = 1_700_000_000  # 2023-11-14T22:13:20Z
BAD_BOX = "co2logserver senseBox bad"
WAIT_LIMIT = 30.0  # seconds any poll of a real process may take at most
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def osem_settings(standin: OsemStandin, **extra: Any) -> dict[str, Any]:
    """Forwarding to the stand-in, fast backoff and lease, no thread unless asked."""
    return {
        "OSEM_UPLOAD": True,
        "OSEM_API": standin.url,
        "OSEM_EMAIL": standin.email,
        "OSEM_PASSWORD": standin.password,
        "OSEM_FORWARDER_THREAD": False,
        "OSEM_MAX_BACKOFF": 1,
        "OSEM_TIMEOUT": 5,
        "OSEM_LEASE_SECONDS": 2,
        **extra,
    }


def osem_time(seconds: float) -> str:
    """How the stand-in writes a UNIX time."""
    moment = time.gmtime(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", moment)


def wait_until(check: Callable[[], Any], limit: float = WAIT_LIMIT) -> Any:
    """Poll ``check`` until it returns something true, at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


class Forwarding:
    """An app with forwarding on, its sensors and legacy uploads, its forwarders."""

    def __init__(self, app, standin: OsemStandin) -> None:
        self.app = app
        self.standin = standin
        self.store = get_store(app)
        self.client = app.test_client()
        self.sensors = SensorActions(self.client)
        self.forwarders: list[OutboxForwarder] = []

    def forwarder(self) -> OutboxForwarder:
        """A new forwarder on the app's database, stopped after the test."""
        made = OutboxForwarder(self.store, self.app.config)
        self.forwarders.append(made)
        return made

    def upload(self, box: str, minute: int, co2: float, **columns: Any) -> None:
        """One legacy row of ``box``, measured ``minute`` minutes after BASE."""
        row = {
            "box": box,
            "time": BASE + 60 * minute,
            "lat": 48.52,
            "lon": 9.05,
            "scd30_co2_ppm": co2,
            **columns,
        }
        response = self.client.post("/upload", json=row)
        assert response.status_code == 200, response.get_data(as_text=True)

    def status(self) -> dict[str, Any]:
        """``outbox.status`` as the pages read it."""
        with self.store.reading() as conn:
            return outbox.status(conn)

    def items(self) -> list:
        """Every outbox row, oldest first."""
        with self.store.reading() as conn:
            return conn.execute(select(outbox_table).order_by(outbox_table.c.id)).all()

    def drain(self, forwarder: OutboxForwarder, rounds: int = 20) -> None:
        """Step until nothing is pending (or ``rounds`` steps were made)."""
        for _ in range(rounds):
            if not self.status()["pending"]:
                return
            forwarder.step()


def received(standin: OsemStandin) -> list[tuple[str, str, float, str]]:
    """(box name, sensor title, value, time) of every measurement, in arrival order."""
    titles = {
        sensor["_id"]: sensor["title"]
        for box in standin.boxes.values()
        for sensor in box["sensors"]
    }
    return [
        (m["box_name"], titles.get(m["sensor_id"], "?"), m["value"], m["createdAt"])
        for m in standin.measurements
    ]


def co2_of(standin: OsemStandin, box: str) -> list[float]:
    """CO2 values that arrived for legacy box ``box``, in arrival order."""
    name = f"co2logserver senseBox {box}"
    return [v for b, title, v, _t in received(standin) if b == name and title == "co2"]


@pytest.fixture
def forwarding(
    osem_standin: OsemStandin, make_app
) -> Iterator[Callable[..., Forwarding]]:
    """Build forwarding apps on the test's SQLite file; stop their forwarders."""
    made: list[Forwarding] = []

    def build(**config: Any) -> Forwarding:
        app = make_app(**osem_settings(osem_standin, **config))
        made.append(Forwarding(app, osem_standin))
        return made[-1]

    yield build
    osem_standin.hang = False  # let stuck forwarders finish quickly
    for setup in made:
        running = setup.app.extensions.get(EXTENSION)
        for forwarder in [*setup.forwarders, running]:
            if forwarder is not None:
                forwarder.stop()


# --------------------------------------------------------------------------------------
# The outbox is written with the data
# --------------------------------------------------------------------------------------


def test_outbox_written_in_the_upload_transaction(forwarding) -> None:
    """Stored rows get items; refused uploads and readings resent get none."""
    setup = forwarding()
    setup.upload("a", 0, 400)
    bad = setup.client.post("/upload", json={"box": "a", "co2": 1, "b-d": 2})
    assert bad.status_code == 400
    suid = setup.sensors.new_suid()
    assert (
        setup.sensors.post_rogue(suid, observations(BASE, BASE + 60)).status_code == 200
    )
    assert setup.sensors.post_rogue(suid, observations(BASE)).status_code == 200
    kinds = Counter((item.kind, item.box) for item in setup.items())
    assert kinds == {("legacy", "a"): 1, ("readings", suid): 2}
    assert setup.status()["pending"] == 3


def test_no_outbox_without_forwarding(client) -> None:
    """With CO2LOGSERVER_OSEM_UPLOAD off nothing is queued."""
    assert client.post("/upload", json={"co2": 400}).status_code == 200
    with get_store(client.application).reading() as conn:
        assert outbox.status(conn)["pending"] == 0


# --------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------


def test_legacy_rows_arrive(forwarding, osem_standin: OsemStandin) -> None:
    """Rows become measurements of the 0.1.2 box and sensors; the outbox empties."""
    setup = forwarding()
    setup.upload("a", 0, 400, sht31_temperature_c=21.5)
    setup.upload("a", 1, 410)
    forwarder = setup.forwarder()
    forwarder.step()
    assert received(osem_standin) == [
        ("co2logserver senseBox a", "co2", 400.0, osem_time(BASE)),
        ("co2logserver senseBox a", "temperature", 21.5, osem_time(BASE)),
        ("co2logserver senseBox a", "co2", 410.0, osem_time(BASE + 60)),
    ]
    box = osem_standin.box_by_name("co2logserver senseBox a")
    assert box["currentLocation"]["coordinates"] == [9.05, 48.52]
    assert {s["unit"] for s in box["sensors"]} == {"ppm", "°C"}
    status = setup.status()
    assert (status["pending"], status["parked"]) == (0, 0)
    assert status["last_success_at"] is not None
    assert status["oldest_pending_at"] is None


def test_opensmog_readings_arrive_at_public_precision(
    forwarding, osem_standin: OsemStandin
) -> None:
    """One box per SUID, one sensor per type, the location rounded to 2 decimals."""
    setup = forwarding()
    suid = setup.sensors.new_suid()
    location = {"latitude": 48.523456, "longitude": 9.057891, "elevation": 321.7}
    secret = setup.sensors.register(suid, {"location": location})
    body = observations(BASE, BASE + 60, PM2_5=8.5, TEMP=21.25)
    assert setup.sensors.post(suid, body, secret).status_code == 200
    setup.forwarder().step()
    name = f"co2logserver OpenSmog {suid}"
    box = osem_standin.box_by_name(name)
    assert box is not None
    assert box["currentLocation"]["coordinates"] == [9.06, 48.52, 322]
    assert {(s["title"], s["unit"], s["icon"]) for s in box["sensors"]} == {
        ("PM2.5", "µg/m³", "osem-particulate-matter"),
        ("Temperature", "°C", "osem-thermometer"),
    }
    assert sorted(received(osem_standin)) == sorted(
        [
            (name, "PM2.5", 8.5, osem_time(BASE)),
            (name, "Temperature", 21.25, osem_time(BASE)),
            (name, "PM2.5", 8.5, osem_time(BASE + 60)),
            (name, "Temperature", 21.25, osem_time(BASE + 60)),
        ]
    )
    assert {m["location"]["lat"] for m in osem_standin.measurements} == {48.52}
    assert "48.523456" not in json.dumps(osem_standin.boxes)
    assert setup.status()["pending"] == 0


def test_batches_per_box(forwarding, osem_standin: OsemStandin) -> None:
    """All rows of a box in one round go in one POST of measurements."""
    setup = forwarding()
    for minute in range(5):
        setup.upload("a", minute, 400 + minute)
        setup.upload("b", minute, 500 + minute)
    setup.forwarder().step()
    assert osem_standin.count("POST", "/boxes/[0-9a-f]+/data") == 2
    assert co2_of(osem_standin, "a") == [400, 401, 402, 403, 404]
    assert co2_of(osem_standin, "b") == [500, 501, 502, 503, 504]


# --------------------------------------------------------------------------------------
# Outages: exactly once, in order; backoff capped and reset
# --------------------------------------------------------------------------------------


def test_outage_then_back_exactly_once_in_order(
    forwarding, osem_standin: OsemStandin
) -> None:
    """Down in the middle of a backlog: nothing lost, nothing twice, order kept."""
    setup = forwarding(OSEM_BATCH_SIZE=4)
    for minute in range(6):
        setup.upload("a", minute, 400 + minute)
        setup.upload("b", minute, 500 + minute)
    forwarder = setup.forwarder()
    forwarder.step()  # the first batch goes
    osem_standin.down = True
    for minute in range(6, 9):
        setup.upload("a", minute, 400 + minute)
    for _ in range(4):
        forwarder.step()
    status = setup.status()
    assert status["pending"] == 12 - 4 + 3
    assert status["last_error"] and "not reachable" in status["last_error"]
    assert max(item.attempts for item in setup.items()) == 4
    osem_standin.down = False
    setup.drain(forwarder)
    assert co2_of(osem_standin, "a") == [400 + m for m in range(9)]
    assert co2_of(osem_standin, "b") == [500 + m for m in range(6)]
    assert setup.status()["pending"] == 0


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limit_and_server_errors_retry(
    forwarding, osem_standin: OsemStandin, status: int
) -> None:
    """429 and 5xx keep the items; they go once OSEM answers again."""
    setup = forwarding()
    setup.upload("a", 0, 400)
    forwarder = setup.forwarder()
    osem_standin.fail_status = status
    assert forwarder.step() == 1.0
    assert setup.status()["pending"] == 1
    osem_standin.fail_status = None
    setup.drain(forwarder)
    assert co2_of(osem_standin, "a") == [400]
    assert setup.status()["parked"] == 0


def test_backoff_doubles_capped_and_resets(
    forwarding, osem_standin: OsemStandin
) -> None:
    """1, 2, 4, 4 seconds while down; back to 1 after a success."""
    setup = forwarding(OSEM_MAX_BACKOFF=4)
    setup.upload("a", 0, 400)
    forwarder = setup.forwarder()
    osem_standin.down = True
    assert [forwarder.step() for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    osem_standin.down = False
    assert forwarder.step() == forwarder_module.IDLE_SECONDS
    osem_standin.down = True
    setup.upload("a", 1, 401)
    assert forwarder.step() == 1.0


@pytest.mark.parametrize(
    ("maximum", "expected"),
    [(30, [1, 2, 4, 8, 16, 30, 30]), (1, [1] * 4), (0.5, [0.5] * 3)],
)
def test_backoff_sequence(maximum: float, expected: list[float]) -> None:
    """The SPEC §8 schedule: doubling from 1 s, never above the cap."""
    backoff = Backoff(maximum)
    assert [backoff.failed() for _ in expected] == expected
    backoff.succeeded()
    assert backoff.failed() == min(1, maximum)


def test_uploads_do_not_touch_osem_while_it_hangs(
    forwarding, osem_standin: OsemStandin
) -> None:
    """With a running forwarder stuck on a blackholed OSEM, uploads still store."""
    setup = forwarding(OSEM_FORWARDER_THREAD=True, OSEM_TIMEOUT=30)
    osem_standin.hang = True
    setup.upload("a", 0, 400)
    assert wait_until(lambda: osem_standin.calls)  # the forwarder is stuck in OSEM
    calls = len(osem_standin.calls)
    for minute in range(1, 20):
        setup.upload("a", minute, 400 + minute)
    assert len(osem_standin.calls) == calls
    assert setup.status()["pending"] == 20


# --------------------------------------------------------------------------------------
# Refusals are parked; boxes without a position wait; neither blocks others
# --------------------------------------------------------------------------------------


def test_refused_box_is_parked_others_continue(
    forwarding, osem_standin: OsemStandin
) -> None:
    """A 4xx parks that box's items with OSEM's reason, once; others arrive."""
    osem_standin.refuse_box_names.add(BAD_BOX)
    setup = forwarding()
    setup.upload("bad", 0, 1)
    setup.upload("good", 0, 400)
    forwarder = setup.forwarder()
    forwarder.step()
    assert co2_of(osem_standin, "good") == [400]
    [parked] = [item for item in setup.items() if item.box == "bad"]
    assert parked.parked_at is not None
    assert "stand-in refuses measurements" in parked.parked_reason
    status = setup.status()
    assert (status["pending"], status["parked"]) == (0, 1)
    assert status["last_error"].startswith("refused for good")
    posts = osem_standin.count("POST", "/boxes/[0-9a-f]+/data")
    setup.upload("good", 1, 401)
    for _ in range(3):
        forwarder.step()
    assert co2_of(osem_standin, "good") == [400, 401]
    assert osem_standin.count("POST", "/boxes/[0-9a-f]+/data") == posts + 1


def test_refused_box_list_is_retried_not_parked(
    forwarding, osem_standin: OsemStandin
) -> None:
    """A 4xx on GET /users/me/boxes keeps the items, backs off and shows the error;
    they go once OSEM lists the boxes again (#12)."""
    setup = forwarding(OSEM_MAX_BACKOFF=4)
    setup.upload("a", 0, 400)
    setup.upload("b", 0, 500)
    forwarder = setup.forwarder()
    osem_standin.fail_routes[("GET", "/users/me/boxes")] = 400
    assert [forwarder.step() for _ in range(3)] == [1.0, 2.0, 4.0]
    status = setup.status()
    assert (status["pending"], status["parked"]) == (2, 0)
    assert "listing the account's boxes" in status["last_error"]
    assert "400" in status["last_error"]
    items = setup.items()
    assert [item.parked_at for item in items] == [None, None]
    assert items[0].attempts == 3  # the round stops there: OSEM is not usable
    osem_standin.fail_routes.clear()
    setup.drain(forwarder)
    assert (co2_of(osem_standin, "a"), co2_of(osem_standin, "b")) == ([400], [500])
    assert setup.status()["parked"] == 0


def test_refused_new_box_is_parked(forwarding, osem_standin: OsemStandin) -> None:
    """Creating the box for the data is refused (422): the data is parked."""
    osem_standin.fail_routes[("POST", "/boxes")] = 422
    setup = forwarding()
    setup.upload("a", 0, 400)
    setup.forwarder().step()
    [item] = setup.items()
    assert item.parked_at is not None
    assert "422" in item.parked_reason


def test_parked_items_requeued_with_sql(forwarding, osem_standin: OsemStandin) -> None:
    """The requeue statement of docs/forwarding.rst sends parked items once."""
    osem_standin.refuse_box_names.add(BAD_BOX)
    setup = forwarding()
    setup.upload("bad", 0, 1)
    forwarder = setup.forwarder()
    forwarder.step()
    assert setup.status()["parked"] == 1
    osem_standin.refuse_box_names.clear()
    with setup.store.transaction() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET parked_at = NULL, parked_reason = NULL "
                "WHERE parked_at IS NOT NULL AND box = 'bad'"
            )
        )
    setup.drain(forwarder)
    assert co2_of(osem_standin, "bad") == [1]


def test_sensor_without_location_waits_until_it_has_one(
    forwarding, osem_standin: OsemStandin
) -> None:
    """A rogue SUID waits without requests; a PUT with a location releases it."""
    setup = forwarding()
    lost, placed = setup.sensors.new_suid(), setup.sensors.new_suid()
    assert setup.sensors.post_rogue(lost, observations(BASE, CO=0.5)).status_code == 200
    secret = setup.sensors.register(
        placed, {"location": {"latitude": 50.1, "longitude": 8.7}}
    )
    setup.sensors.post(placed, observations(BASE, CO=0.7), secret)
    forwarder = setup.forwarder()
    forwarder.step()
    assert [v for _b, _t, v, _ts in received(osem_standin)] == [0.7]
    assert osem_standin.box_by_name(f"co2logserver OpenSmog {lost}") is None
    [waiting] = [item for item in setup.items() if item.box == lost]
    assert "no valid location" in waiting.waiting_reason
    calls = len(osem_standin.calls)
    forwarder.step()
    assert len(osem_standin.calls) == calls  # waiting costs OSEM nothing
    setup.sensors.register(lost, {"location": {"latitude": 52.521, "longitude": 13.4}})
    forwarder.step()
    box = osem_standin.box_by_name(f"co2logserver OpenSmog {lost}")
    assert box["currentLocation"]["coordinates"] == [13.4, 52.52]
    assert Counter(v for _b, _t, v, _ts in received(osem_standin)) == {0.7: 1, 0.5: 1}
    assert setup.status()["pending"] == 0


def test_default_location_hooks_place_sensors(
    forwarding, osem_standin: OsemStandin
) -> None:
    """CO2LOGSERVER_DEFAULT_LAT/LON place a sensor that has no location."""
    setup = forwarding(DEFAULT_LAT=lambda box: 47.5, DEFAULT_LON=lambda box: 7.25)
    suid = setup.sensors.new_suid()
    setup.sensors.post_rogue(suid, observations(BASE, HUM=40))
    setup.upload("nowhere", 0, 400, lat=None, lon=None)
    setup.forwarder().step()
    smog = osem_standin.box_by_name(f"co2logserver OpenSmog {suid}")
    legacy = osem_standin.box_by_name("co2logserver senseBox nowhere")
    assert smog["currentLocation"]["coordinates"] == [7.25, 47.5]
    assert legacy["currentLocation"]["coordinates"] == [7.25, 47.5]
    assert setup.status()["pending"] == 0


def test_legacy_box_without_position_waits(
    forwarding, osem_standin: OsemStandin
) -> None:
    """Rows of a new box without lat/lon wait; other boxes go on."""
    setup = forwarding()
    setup.upload("nowhere", 0, 1, lat=None, lon=None)
    setup.upload("good", 0, 400)
    forwarder = setup.forwarder()
    forwarder.step()
    forwarder.step()
    assert co2_of(osem_standin, "good") == [400]
    assert osem_standin.box_by_name("co2logserver senseBox nowhere") is None
    [waiting] = [item for item in setup.items()]
    assert waiting.box == "nowhere" and waiting.parked_at is None
    assert "no position is known" in waiting.waiting_reason


# --------------------------------------------------------------------------------------
# The lease: one sender per database
# --------------------------------------------------------------------------------------


def lease_holder(setup: Forwarding) -> str | None:
    """The current holder of the forwarder lease."""
    with setup.store.reading() as conn:
        return outbox.lease_holder(conn, forwarder_module.LEASE)


def test_second_forwarder_waits_for_the_lease(
    forwarding, osem_standin: OsemStandin
) -> None:
    """Only the holder sends; a release hands over at once, a death at expiry."""
    setup = forwarding(OSEM_LEASE_SECONDS=1)
    first, second = setup.forwarder(), setup.forwarder()
    setup.upload("a", 0, 400)
    first.step()
    setup.upload("a", 1, 401)
    assert second.step() == pytest.approx(1 / 3)
    assert co2_of(osem_standin, "a") == [400]
    first.release()
    second.step()
    assert co2_of(osem_standin, "a") == [400, 401]
    assert lease_holder(setup) == second.holder
    # the second "dies" holding the lease: the first waits for the expiry
    setup.upload("a", 2, 402)
    assert first.step() == pytest.approx(1 / 3)
    assert co2_of(osem_standin, "a") == [400, 401]
    assert wait_until(lambda: first.lease.acquire(), limit=5)
    first.step()
    assert co2_of(osem_standin, "a") == [400, 401, 402]


def test_lease_kept_while_osem_hangs(forwarding, osem_standin: OsemStandin) -> None:
    """A holder stuck in a slow request keeps its lease: no second sender."""
    setup = forwarding(OSEM_LEASE_SECONDS=1, OSEM_TIMEOUT=30)
    setup.upload("a", 0, 400)
    osem_standin.hang = True
    stuck = setup.forwarder()
    stuck.ensure_thread()
    assert wait_until(lambda: osem_standin.calls)
    other = setup.forwarder()
    deadline = time.monotonic() + 3  # three lease lifetimes
    while time.monotonic() < deadline:
        assert not other.lease.acquire()
        time.sleep(0.1)
    osem_standin.hang = False  # the held request fails; the holder retries
    assert wait_until(lambda: co2_of(osem_standin, "a"))
    stuck.stop()
    assert lease_holder(setup) is None  # released on stop
    other.step()
    assert co2_of(osem_standin, "a") == [400]


def concurrent_forwarders(setup: Forwarding, count: int) -> list[OutboxForwarder]:
    """Start ``count`` forwarder threads on one database."""
    forwarders = [setup.forwarder() for _ in range(count)]
    for forwarder in forwarders:
        forwarder.ensure_thread()
    return forwarders


def test_two_forwarder_threads_send_each_item_once(
    any_db_app, osem_standin: OsemStandin
) -> None:
    """Two forwarders racing on SQLite or PostgreSQL: each measurement once."""
    app = any_db_app(**osem_settings(osem_standin, OSEM_LEASE_SECONDS=1))
    setup = Forwarding(app, osem_standin)
    setup.store.ensure_schema()  # PostgreSQL: concurrent first CREATE TABLEs clash
    try:
        forwarders = concurrent_forwarders(setup, 2)
        for minute in range(30):
            setup.upload("a" if minute % 2 else "b", minute, 400 + minute)
        assert wait_until(lambda: len(osem_standin.measurements) >= 30)
        assert wait_until(lambda: setup.status()["pending"] == 0)
    finally:
        for forwarder in setup.forwarders:
            forwarder.stop()
    assert co2_of(osem_standin, "a") == [400 + m for m in range(1, 30, 2)]
    assert co2_of(osem_standin, "b") == [400 + m for m in range(0, 30, 2)]
    assert len({f.holder for f in forwarders}) == 2


def test_acquire_lease_is_exclusive(any_db_app, osem_standin: OsemStandin) -> None:
    """Many threads asking at once: exactly one gets a free lease."""
    app = any_db_app(**osem_settings(osem_standin))
    store = get_store(app)
    store.ensure_schema()
    barrier = threading.Barrier(6)
    wins: list[str] = []

    def ask(holder: str) -> None:
        barrier.wait()
        with contextlib.suppress(Exception), store.transaction() as conn:
            if outbox.acquire_lease(conn, "race", holder, 30):
                wins.append(holder)

    threads = [threading.Thread(target=ask, args=(f"h{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_forwarder_thread_survives_a_database_outage(
    postgres_server, build_app, osem_standin: OsemStandin
) -> None:
    """PostgreSQL stops and comes back: the thread lives on and forwards once."""
    settings = osem_settings(osem_standin, OSEM_FORWARDER_THREAD=True)
    app = build_app({"DB": postgres_server.url, **settings})
    setup = Forwarding(app, osem_standin)
    running = app.extensions[EXTENSION]
    try:
        setup.upload("pg", 0, 400)
        assert wait_until(lambda: co2_of(osem_standin, "pg"))
        postgres_server.stop()
        time.sleep(2 * forwarder_module.IDLE_SECONDS)  # rounds fail meanwhile
        assert running.thread_alive()
        postgres_server.start()
        setup.upload("pg", 1, 401)
        assert wait_until(lambda: len(co2_of(osem_standin, "pg")) == 2)
        assert running.thread_alive()
    finally:
        running.stop()
    assert co2_of(osem_standin, "pg") == [400, 401]


# --------------------------------------------------------------------------------------
# The thread: fork, stop, secrets
# --------------------------------------------------------------------------------------


def test_thread_restarts_in_a_forked_child(
    forwarding, osem_standin: OsemStandin
) -> None:
    """A forked worker gets its own thread and holder name, and no open database.

    SQLite connections must not cross fork() (gunicorn --preload forks a master
    whose forwarder has used the database): the child starts with none open.
    """
    setup = forwarding()
    setup.upload("a", 0, 400)
    forwarder = setup.forwarder()
    process.install_process_hooks()
    forwarder.ensure_thread()
    assert wait_until(lambda: osem_standin.measurements, limit=10)
    database = setup.app.config["CO2LOGSERVER_DB"]
    assert open_files(database)  # the parent has its connections

    def child() -> dict:
        before = forwarder.thread_alive()
        inherited = len(open_files(database))
        forwarder.ensure_thread()
        report = {
            "before": before,
            "inherited": inherited,
            "after": forwarder.thread_alive(),
            "holder_pid": int(forwarder.holder.split(":")[1]),
        }
        forwarder.stop()
        return report

    pid, report = in_a_forked_child(child)
    assert report == {"before": False, "inherited": 0, "after": True, "holder_pid": pid}
    assert forwarder.thread_alive()  # the parent's thread runs on


def test_stopped_forwarder_is_not_restarted(forwarding) -> None:
    """After stop(), a request does not bring the thread back."""
    setup = forwarding(OSEM_FORWARDER_THREAD=True)
    running = setup.app.extensions[EXTENSION]
    assert wait_until(running.thread_alive, limit=5)
    running.stop()
    assert not running.thread_alive()
    setup.client.get("/health")
    assert not running.thread_alive()


def test_no_secrets_in_logs_or_status(
    forwarding, osem_standin: OsemStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at DEBUG, neither password nor tokens reach logs or the status."""
    setup = forwarding(SENSEMAPI_LOGLEVEL=logging.DEBUG)
    forwarder = setup.forwarder()
    with caplog.at_level(logging.DEBUG):
        setup.upload("a", 0, 400)
        forwarder.step()
        osem_standin.fail_status = 503
        setup.upload("a", 1, 401)
        forwarder.step()
        osem_standin.fail_status = None
        osem_standin.expire_tokens()
        forwarder.step()
    assert co2_of(osem_standin, "a") == [400, 401]
    shown = caplog.text + json.dumps(setup.status())
    assert osem_standin.password not in shown
    assert [s for s in osem_standin.issued_secrets if s in shown] == []


def test_scrub_removes_password_and_tokens(forwarding) -> None:
    """Reasons are scrubbed before they are stored or logged."""
    setup = forwarding()
    forwarder = setup.forwarder()
    password = setup.app.config["CO2LOGSERVER_OSEM_PASSWORD"]
    cleaned = forwarder.scrub(f"login {password} failed, token='abc123' Bearer xyz")
    assert password not in cleaned
    assert "abc123" not in cleaned and "xyz" not in cleaned


# --------------------------------------------------------------------------------------
# Real processes: gunicorn and `python3 -m co2logserver forward`
# --------------------------------------------------------------------------------------


def process_settings(standin: OsemStandin, **extra: Any) -> dict[str, str]:
    """Settings (environment values) of a process forwarding to the stand-in."""
    return {
        "OSEM_UPLOAD": "True",
        "OSEM_API": standin.url,
        "RATELIMIT_ENABLED": "False",
        "OSEM_MAX_BACKOFF": "1",
        "OSEM_LEASE_SECONDS": "2",
        "OSEM_TIMEOUT": "20",
        "LOGLEVEL": "INFO",
        **{key: str(value) for key, value in extra.items()},
    }


def credentials(standin: OsemStandin) -> dict[str, str]:
    """The stand-in's login in the variables 0.1.2 read."""
    return {"SENSEMAP_EMAIL": standin.email, "SENSEMAP_PASSWORD": standin.password}


def process_env(db: str, standin: OsemStandin, **extra: Any) -> dict[str, str]:
    """The whole environment of a ``forward`` process."""
    settings = process_settings(standin, DB=db, **extra)
    return {
        **os.environ,
        **{f"CO2LOGSERVER_{key}": value for key, value in settings.items()},
        **credentials(standin),
    }


def gunicorn(
    tmp_path: Path, standin: OsemStandin, *options: str
) -> tuple[GunicornServer, str]:
    """A started ``gunicorn -w 2 'co2logserver:create_app()'`` and its database."""
    db = str(tmp_path / "co2.sqlite")
    server = GunicornServer(
        tmp_path,
        process_settings(standin, DB=db),
        extra_env=credentials(standin),
        extra_args=options,
    )
    server.start()
    return server, db


def http_upload(server: GunicornServer, box: str, minute: int, co2: float) -> None:
    """One legacy row over HTTP; it must be stored at once (5 s at most)."""
    row = {"box": box, "time": BASE + 60 * minute, "lat": 1.5, "lon": 2.5}
    response = requests.post(
        server.url + "/upload", json={**row, "scd30_co2_ppm": co2}, timeout=5
    )
    assert response.status_code == 200, response.text


def holder_pid(db: str) -> int | None:
    """The PID in the current lease holder's name (``host:pid:id``)."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        row = conn.execute(
            "SELECT holder FROM leases WHERE name = ? AND expires_at > ?",
            (forwarder_module.LEASE, time.time()),
        ).fetchone()
    return int(row[0].split(":")[1]) if row else None


def outbox_count(db: str) -> int:
    """Items not yet sent (pending, not parked)."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(
            "SELECT count(*) FROM outbox WHERE parked_at IS NULL"
        ).fetchone()[0]


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Signal a process we started and wait for it (SIGKILL after 20 s)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(5)


@pytest.mark.slow
def test_gunicorn_uploads_while_osem_away_then_exactly_once(
    tmp_path: Path, osem_standin: OsemStandin
) -> None:
    """Blackholed, then down, two worker deaths: uploads all succeed, then arrive once.

    While OSEM hangs the lease holder is stuck in a request for 20 s
    (CO2LOGSERVER_OSEM_TIMEOUT), so an upload that waited for OSEM would time out
    after 5 s. The holder is then killed (SIGKILL: its lease expires) and the next
    holder stopped (SIGTERM: it releases its lease); gunicorn replaces both.
    """
    osem_standin.hang = True
    server, db = gunicorn(tmp_path, osem_standin)
    try:
        http_upload(server, "a", 0, 400)
        killed = wait_until(lambda: holder_pid(db))
        assert wait_until(lambda: osem_standin.calls)
        for minute in range(1, 10):
            http_upload(server, "a" if minute % 2 else "b", minute, 400 + minute)
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: (holder_pid(db) or killed) != killed)
        osem_standin.hang = False
        osem_standin.down = True
        for minute in range(10, 20):
            http_upload(server, "a" if minute % 2 else "b", minute, 400 + minute)
        stopped = holder_pid(db)
        os.kill(stopped, signal.SIGTERM)
        assert wait_until(lambda: stopped not in server.worker_pids())
        assert outbox_count(db) == 20
        assert osem_standin.measurements == []
        osem_standin.down = False
        assert wait_until(lambda: outbox_count(db) == 0)
        assert len(server.worker_pids()) == 2
        log = server.log()
    finally:
        server.stop()
    assert co2_of(osem_standin, "a") == [400] + [400 + m for m in range(1, 20, 2)]
    assert co2_of(osem_standin, "b") == [400 + m for m in range(2, 20, 2)]
    assert "Traceback" not in log


def post_signed_readings(server: GunicornServer, suid: str) -> None:
    """Register ``suid`` with a location and post two signed NO2 readings."""
    location = {"location": {"latitude": 10.123, "longitude": 20.987}}
    put = requests.put(f"{server.url}/v1/sensors/{suid}", json=location, timeout=5)
    assert put.status_code == 200, put.text
    body = observations(BASE, BASE + 60, NO2=20.0)
    posted = requests.post(
        f"{server.url}/v1/sensors/{suid}/readings",
        data=body,
        headers={"Authorization": f"OpenSmogHash {opensmog_hash(body, put.text)}"},
        timeout=5,
    )
    assert posted.status_code == 200, posted.text


@pytest.mark.slow
def test_gunicorn_preload_forwards_once(
    tmp_path: Path, osem_standin: OsemStandin
) -> None:
    """--preload: master and workers share one lease; rows and readings go once."""
    suid = "0b8c8d4e-1c0a-4bd5-9d4b-6f1e2a3b4c5d"
    server, db = gunicorn(tmp_path, osem_standin, "--preload")
    try:
        for minute in range(20):
            http_upload(server, "a", minute, 400 + minute)
        post_signed_readings(server, suid)
        assert wait_until(lambda: outbox_count(db) == 0)
        log = server.log()
    finally:
        server.stop()
    assert co2_of(osem_standin, "a") == [400 + m for m in range(20)]
    name = f"co2logserver OpenSmog {suid}"
    smog = [(t, v) for b, t, v, _ts in received(osem_standin) if b == name]
    assert smog == [("NO2", 20.0), ("NO2", 20.0)]
    box = osem_standin.box_by_name(name)
    assert box["currentLocation"]["coordinates"] == [20.99, 10.12]
    assert "Traceback" not in log


def start_forward(tmp_path: Path, env: dict[str, str], name: str) -> subprocess.Popen:
    """``python3 -m co2logserver forward`` with its output in a log file."""
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "co2logserver", "forward"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_forward_command_processes_hand_over(
    tmp_path: Path, osem_standin: OsemStandin, make_app
) -> None:
    """Two ``forward`` processes: one sends; SIGTERM and SIGKILL hand over, once."""
    db = str(tmp_path / "co2.sqlite")
    setup = Forwarding(make_app(**osem_settings(osem_standin)), osem_standin)
    env = process_env(db, osem_standin, OSEM_LEASE_SECONDS=1)
    processes = [start_forward(tmp_path, env, f"forward-{i}") for i in range(2)]
    try:
        for minute in range(10):
            setup.upload("a", minute, 400 + minute)
        assert wait_until(lambda: outbox_count(db) == 0)
        by_pid = {p.pid: p for p in processes}
        first = by_pid[holder_pid(db)]
        assert stop_process(first) == 0
        for minute in range(10, 20):
            setup.upload("a", minute, 400 + minute)
        assert wait_until(lambda: outbox_count(db) == 0)
        second = by_pid[holder_pid(db)]
        assert second is not first
        stop_process(second, signal.SIGKILL)
        processes.append(start_forward(tmp_path, env, "forward-2"))
        for minute in range(20, 30):
            setup.upload("a", minute, 400 + minute)
        assert wait_until(lambda: outbox_count(db) == 0)
        assert holder_pid(db) == processes[-1].pid
    finally:
        for process in processes:
            stop_process(process)
    assert co2_of(osem_standin, "a") == [400 + m for m in range(30)]


def test_forward_command_needs_forwarding_on(runner) -> None:
    """Without CO2LOGSERVER_OSEM_UPLOAD the command says so and exits 1."""
    from co2logserver.cli import main

    result = runner.invoke(main, ["forward"])
    assert result.exit_code == 1
    assert "CO2LOGSERVER_OSEM_UPLOAD is off" in result.output


def test_protocol_devices_are_forwarded_like_opensmog_sensors(
    forwarding, osem_standin: OsemStandin
) -> None:
    """A LoRaWAN uplink (§9.3) reaches the OpenSenseMap through the outbox,
    learned quantities included, at public precision."""
    from co2logserver.devices import suid_for

    setup = forwarding(LORAWAN_WEBHOOK_SECRETS=["hook-secret"])
    uplink = {
        "end_device_ids": {"device_id": "d1", "dev_eui": "00AA00AA00AA00AB"},
        "received_at": "2023-11-14T22:13:20Z",
        "uplink_message": {
            "decoded_payload": {"temperature": 19.5, "battery_mv": 3012},
            "rx_metadata": [{"time": "2023-11-14T22:13:20Z"}],
            "locations": {"user": {"latitude": 48.523456, "longitude": 9.057891}},
        },
    }
    reply = setup.app.test_client().post(
        "/lorawan/v1/ttn", json=uplink, headers={"X-Webhook-Secret": "hook-secret"}
    )
    assert reply.status_code == 200, reply.data
    setup.forwarder().step()
    suid = suid_for("lorawan:00aa00aa00aa00ab")
    box = osem_standin.box_by_name(f"co2logserver OpenSmog {suid}")
    assert box is not None
    assert box["currentLocation"]["coordinates"][:2] == [9.06, 48.52]
    titles = {s["title"] for s in box["sensors"]}
    assert "Temperature" in titles and "battery_mv" in titles
    assert sorted(v for _n, _t, v, _at in received(osem_standin)) == [19.5, 3012.0]
    assert setup.status()["pending"] == 0

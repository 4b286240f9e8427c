"""The pages in a real browser: headless Debian Chromium driven by Playwright.

The app is served over real HTTP on 127.0.0.1 and seeded through its own HTTP API.
Each test checks that its page loads with no console errors and no request leaving
the machine, and that the charts (uPlot instances in ``window.co2charts``) draw the
series and points the seeded data calls for. A failing test leaves a screenshot in
``test-artifacts/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from co2logserver import create_app
from co2logserver.store import get_store

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STEP = 600  # seconds between seeded readings
DAYS = 10
GAP = range(30, 36)  # seeded steps left out: a three-hour hole in the last day
EXACT = {"latitude": 48.521234, "longitude": 9.057891}


def missing(reason: str):
    """Skip locally, fail in CI (CI=true), as tests/servers.py does for servers."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module (Debian's; Playwright downloads none)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    if not shutil.which(CHROMIUM):
        missing(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class LiveServer:
    """The app on a real HTTP port, served by werkzeug in a thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes = b"", headers=None):
        """Send one request and return ``(status, body text)``."""
        # urllib would declare a body application/x-www-form-urlencoded (a 415
        # for readings): these bodies are JSON.
        headers = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(
            self.url + path, data=body or None, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()

    def stop(self) -> None:
        """Stop serving and close the database connections."""
        self.server.shutdown()
        self.thread.join(timeout=10)
        get_store(self.app).dispose()


def seeded_times(base: int) -> list[int]:
    """Reading times: every STEP seconds for DAYS days, minus the GAP."""
    count = DAYS * 86400 // STEP
    return [base - 300 - k * STEP for k in range(count) if k not in GAP]


def seed(server: LiveServer) -> dict:
    """A secure sensor with PM10 and TEMP, a silent rogue one, and legacy rows."""
    suid = str(uuid.uuid4())
    metadata = {"manufacturer": "ACME", "model": "AQ-1", "location": EXACT}
    status, secret = server.request(
        "PUT",
        f"/v1/sensors/{suid}",
        json.dumps(metadata).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    base = int(time.time())
    times = seeded_times(base)
    for start in range(0, len(times), 1000):
        body = json.dumps(
            [
                {"timestamp": ts, "readings": {"PM10": 10 + ts % 7, "TEMP": 20.5}}
                for ts in times[start : start + 1000]
            ]
        ).encode()
        digest = hashlib.sha256(body + secret.encode()).hexdigest()
        headers = {"Authorization": f"OpenSmogHash {digest}"}
        assert (
            server.request("POST", f"/v1/sensors/{suid}/readings", body, headers)[0]
            == 200
        )
    rogue = str(uuid.uuid4())
    silent = json.dumps([{"timestamp": base - 7200, "readings": {"HUM": 55}}])
    server.request("POST", f"/rogue/v1/sensors/{rogue}/readings", silent.encode())
    legacy = {
        "time": [base - 3600 + 60 * i for i in range(20)],
        "co2": [400 + i for i in range(20)],
        "temperature_c": [20 + i / 10 for i in range(20)],
        "box": ["kitchen"] * 20,
    }
    server.request(
        "POST",
        "/upload",
        json.dumps(legacy).encode(),
        {"Content-Type": "application/json"},
    )
    return {"suid": suid, "rogue": rogue, "times": times}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A seeded server for the module's tests."""
    db = tmp_path_factory.mktemp("browser") / "co2.sqlite"
    app = create_app({"DB": str(db), "RATELIMIT_ENABLED": False})
    server = LiveServer(app)
    try:
        server.seed = seed(server)
        yield server
    finally:
        server.stop()


class Page:
    """A browser tab that records console errors and requests leaving 127.0.0.1."""

    def __init__(self, context, base_url: str):
        self.tab = context.new_page()
        self.tab.set_default_timeout(10_000)
        self.base_url = base_url
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.tab.on("console", self.on_console)
        self.tab.on("pageerror", lambda error: self.errors.append(str(error)))
        context.route("**/*", self.route)

    def on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def route(self, route) -> None:
        """Let requests to the test server through; refuse and note any other."""
        url = route.request.url
        if url.startswith(self.base_url) or url.startswith("data:"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def open(self, path: str) -> None:
        """Load ``path`` and wait until its scripts have run."""
        response = self.tab.goto(self.base_url + path)
        assert response.status == 200, response.status
        self.tab.wait_for_load_state("load")

    def charts_ready(self) -> None:
        """Wait for charts.js to have drawn."""
        self.tab.wait_for_selector("html[data-charts-ready]", state="attached")

    def check_clean(self) -> None:
        """No console errors and nothing fetched from outside."""
        assert self.errors == []
        assert self.outside == []

    def chart_counts(self) -> dict:
        """Per chart: number of series (without x) and drawn points per series."""
        return self.tab.evaluate(
            """() => Object.fromEntries(Object.entries(window.co2charts).map(
                ([key, u]) => [key, {
                    series: u.series.length - 1,
                    points: u.data.slice(1).map(
                        ys => ys.filter(y => y !== null && y !== undefined).length),
                    gaps: u.data[1].filter(y => y === null).length,
                    width: u.width,
                }]))"""
        )

    def span(self) -> tuple[int, int, int]:
        """``(start, end, interval)`` the sensor page charts."""
        data = self.tab.eval_on_selector("#charts", "el => ({...el.dataset})")
        return int(data["start"]), int(data["end"]), int(data["interval"])


@pytest.fixture
def page(chromium, live):
    """A fresh browser context and tab on the live server."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    tab = Page(context, live.url)
    yield tab
    context.close()


def screenshot_on_failure(test):
    """Save a full-page screenshot to test-artifacts/ when ``test`` fails."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            target = ARTIFACTS / f"{test.__name__}.png"
            tab = next(v for v in kwargs.values() if isinstance(v, Page))
            tab.tab.screenshot(path=str(target), full_page=True)
            raise

    return run


def expected_buckets(times: list[int], start: int, end: int, interval: int) -> int:
    """How many buckets the seeded readings fill in ``[start, end)``."""
    return len({ts - ts % interval for ts in times if start <= ts < end})


@screenshot_on_failure
def test_dashboard_shows_counts_and_links(page, live):
    page.open("/")
    page.check_clean()
    assert page.tab.inner_text("#sensor-count") == "2"
    assert page.tab.inner_text("#sensors-silent") == "1"
    assert page.tab.inner_text("#row-count") == "20"
    assert page.tab.inner_text("#uploads-hour") == "20"
    assert int(page.tab.inner_text("#reading-count")) == 2 * len(live.seed["times"]) + 1
    links = page.tab.eval_on_selector_all("main a", "els => els.map(a => a.pathname)")
    assert {"/sensors", "/download", "/v1/sensors", "/health"} <= set(links)


@screenshot_on_failure
def test_sensor_list_marks_silent_sensors_and_draws_sparklines(page, live):
    page.open("/sensors")
    page.check_clean()
    seed = live.seed
    secure = page.tab.locator(f'tr[data-suid="{seed["suid"]}"]')
    rogue = page.tab.locator(f'tr[data-suid="{seed["rogue"]}"]')
    assert secure.get_attribute("class") == "active"
    assert rogue.get_attribute("class") == "silent"
    assert rogue.locator(".badge.silent").is_visible()
    points = secure.locator("svg.sparkline polyline").get_attribute("points")
    assert len(points.split()) == 30
    body = page.tab.inner_text("main")
    assert "48.52, 9.06" in body
    assert str(EXACT["latitude"]) not in page.tab.content()
    for direction in ("desc", "asc"):
        page.tab.click("th a[href*='sort=reading_count']")
        page.tab.wait_for_url(f"**/sensors?sort=reading_count&order={direction}")
    page.check_clean()
    order = page.tab.eval_on_selector_all(
        "#sensor-table tbody tr", "rows => rows.map(r => r.dataset.suid)"
    )
    assert order == [seed["rogue"], seed["suid"]]


@screenshot_on_failure
def test_sensor_page_draws_one_chart_per_type(page, live):
    page.open(f"/sensors/{live.seed['suid']}")
    page.charts_ready()
    page.check_clean()
    start, end, interval = page.span()
    assert end - start == 86400
    counts = page.chart_counts()
    assert sorted(counts) == ["PM10", "TEMP"]
    expected = expected_buckets(live.seed["times"], start, end, interval)
    assert expected > 100
    for chart in counts.values():
        assert chart["series"] == 3  # mean, min, max
        assert chart["points"] == [expected] * 3
        assert chart["gaps"] == 1  # the three-hour hole breaks the line once
        assert chart["width"] > 600
    axis = page.tab.evaluate("() => window.co2charts.PM10.axes[1].label")
    assert axis == "PM10 (µg/m³)"
    csv = page.tab.get_attribute("#link-csv", "href")
    assert f"from={start}" in csv and "format=csv" in csv


@screenshot_on_failure
def test_hovering_a_chart_shows_its_values(page, live):
    page.open(f"/sensors/{live.seed['suid']}")
    page.charts_ready()
    box = page.tab.locator('.chart[data-chart-type="TEMP"] .u-over').bounding_box()
    page.tab.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2)
    legend = page.tab.locator('.chart[data-chart-type="TEMP"] .u-legend')
    page.tab.wait_for_function(
        """() => document.querySelector('.chart[data-chart-type="TEMP"] .u-legend')
                 .innerText.includes('20.5')"""
    )
    assert "mean" in legend.inner_text()
    page.check_clean()


@screenshot_on_failure
def test_range_picker_changes_the_data(page, live):
    page.open(f"/sensors/{live.seed['suid']}")
    page.charts_ready()
    day = page.chart_counts()["PM10"]["points"][0]
    with page.tab.expect_navigation():
        page.tab.select_option("#range", "7d")
    page.charts_ready()
    page.check_clean()
    start, end, interval = page.span()
    assert (end - start, interval) == (7 * 86400, 900)
    week = page.chart_counts()["PM10"]["points"][0]
    assert week == expected_buckets(live.seed["times"], start, end, interval)
    assert week > day
    assert page.tab.input_value("#range") == "7d"


@screenshot_on_failure
def test_custom_range_and_empty_range(page, live):
    page.open(f"/sensors/{live.seed['suid']}")
    page.charts_ready()
    page.tab.select_option("#range", "custom")
    page.tab.fill("#range-from", "2001-01-01T00:00")
    page.tab.fill("#range-to", "2001-01-02T00:00")
    with page.tab.expect_navigation():
        page.tab.click("form#range-picker button")
    page.charts_ready()
    page.check_clean()
    assert page.chart_counts() == {}
    assert "No readings" in page.tab.inner_text("#no-data")
    last = max(live.seed["times"])
    first = last - 2 * 3600
    page.open(f"/sensors/{live.seed['suid']}?range=custom&from={first}&to={last + 1}")
    page.charts_ready()
    start, end, interval = page.span()
    assert (start, end, interval) == (first, last + 1, 60)
    counts = page.chart_counts()
    assert counts["TEMP"]["points"] == [13] * 3  # every 10 minutes, both ends in
    page.check_clean()


@screenshot_on_failure
def test_data_page_charts_the_numeric_columns(page, live):
    page.open("/download?format=html&cols=time,co2,temperature_c,box")
    page.charts_ready()
    page.check_clean()
    counts = page.chart_counts()
    assert counts["data"]["series"] == 2  # co2, temperature_c; box is text
    assert counts["data"]["points"] == [20, 20]
    labels = page.tab.evaluate(
        "() => window.co2charts.data.series.slice(1).map(s => s.label)"
    )
    assert labels == ["co2", "temperature_c"]
    assert page.tab.locator("#data-table tbody tr").count() == 20


@screenshot_on_failure
def test_pages_work_without_javascript(chromium, live, page):
    context = chromium.new_context(java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(f"{live.url}/sensors/{live.seed['suid']}")
        assert tab.locator("table.buckets").count() == 2
        tab.select_option("#range", "30d")
        tab.click("form#range-picker button")
        tab.wait_for_url("**range=30d**")
        assert tab.input_value("#range") == "30d"
        assert "buckets of 1 h" in tab.inner_text("#range-summary")
        tab.goto(f"{live.url}/sensors")
        assert tab.locator("#sensor-table tbody tr").count() == 2
    finally:
        context.close()


# --- The /download chart (#12) -------------------------------------------------------

LEGACY_DB = Path(__file__).parent / "data" / "co2-0.1.2.sqlite"
CHART_T0 = 1_750_000_000  # the first of the uploaded rows; ten days later, 20 more


@pytest.fixture(scope="module")
def legacy_live(tmp_path_factory):
    """A copy of the 0.1.2 database (time, time_utc, lat, lon…) plus rows with a
    ten-day hole, an id, a height and values of ten digits."""
    db = tmp_path_factory.mktemp("legacy-chart") / "co2.sqlite"
    shutil.copy(LEGACY_DB, db)
    app = create_app({"DB": str(db), "RATELIMIT_ENABLED": False})
    server = LiveServer(app)
    times = [CHART_T0 + 60 * i for i in range(20)]
    times += [CHART_T0 + 10 * 86400 + 60 * i for i in range(20)]
    rows = {
        "time": times,
        "co2": [500 + i for i in range(40)],
        "big": [1_000_000_000 + 1000 * i for i in range(40)],
        "box_id": [7] * 40,
        "height": [312.5] * 40,
        "lat": [48.5] * 40,
        "lon": [9.05] * 40,
    }
    try:
        status, _ = server.request(
            "POST",
            "/upload",
            json.dumps(rows).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200
        yield server
    finally:
        server.stop()


@pytest.fixture
def legacy_page(chromium, legacy_live):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    tab = Page(context, legacy_live.url)
    yield tab
    context.close()


def data_chart(page: Page) -> dict:
    """The download chart: x label, x values, series labels and y data."""
    return page.tab.evaluate(
        """() => { const u = window.co2charts.data; return {
            xLabel: u.series[0].label,
            xs: u.data[0],
            labels: u.series.slice(1).map(s => s.label),
            ys: u.data.slice(1),
        }; }"""
    )


@screenshot_on_failure
def test_download_chart_x_is_the_time_column_of_the_legacy_db(legacy_page):
    page = legacy_page
    page.open("/download")
    page.charts_ready()
    page.check_clean()
    chart = data_chart(page)
    assert chart["xLabel"] == "time (UTC)"
    assert page.tab.get_attribute("#data-chart", "data-x-column") == "time"
    xs = [x for x in chart["xs"] if x is not None]
    # 2017-07-14 from the 0.1.2 rows and the uploaded times; the upload time
    # (2026, every row the same minute) is not the axis.
    assert min(xs) == 1500000000
    assert max(xs) == CHART_T0 + 10 * 86400 + 60 * 19


@screenshot_on_failure
def test_download_chart_draws_measurements_only(legacy_page):
    page = legacy_page
    page.open("/download")
    page.charts_ready()
    labels = data_chart(page)["labels"]
    assert labels == ["co2", "temperature_c", "big"]
    for name in ("time", "time_utc", "lat", "lon", "box_id", "height"):
        assert name not in labels
    page.check_clean()


@screenshot_on_failure
def test_download_chart_breaks_lines_at_gaps(legacy_page):
    page = legacy_page
    page.open("/download?cols=time,co2&min_time=" + str(CHART_T0))
    page.charts_ready()
    chart = data_chart(page)
    (co2,) = chart["ys"]
    assert co2.count(None) == 1  # the ten-day hole, once
    hole = co2.index(None)
    assert chart["xs"][hole - 1] < chart["xs"][hole] < chart["xs"][hole + 1]
    assert chart["xs"][hole + 1] - chart["xs"][hole - 1] > 9 * 86400
    assert len([y for y in co2 if y is not None]) == 40
    page.check_clean()


@screenshot_on_failure
def test_download_chart_axes_fit_their_labels(legacy_page):
    page = legacy_page
    page.open("/download?cols=time,big,co2")
    page.charts_ready()
    fits = page.tab.evaluate(
        """() => { const u = window.co2charts.data;
            return u.axes.slice(1).map(a => {
              u.ctx.font = a.font[0];
              const widest = Math.max(...a._values.map(
                v => u.ctx.measureText(String(v)).width)) / devicePixelRatio;
              return {values: a._values, need: widest + a.ticks.size + a.gap,
                      size: a._size};
            }); }"""
    )
    assert any("1,000,0" in str(axis["values"]) for axis in fits)
    for axis in fits:
        assert axis["size"] >= axis["need"], axis
    page.check_clean()


@pytest.fixture(scope="module")
def empty_live(tmp_path_factory):
    db = tmp_path_factory.mktemp("empty") / "co2.sqlite"
    server = LiveServer(create_app({"DB": str(db), "RATELIMIT_ENABLED": False}))
    yield server
    server.stop()


@pytest.fixture
def empty_page(chromium, empty_live):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    tab = Page(context, empty_live.url)
    yield tab
    context.close()


@screenshot_on_failure
def test_empty_download_says_there_is_no_data_and_how_to_upload(empty_page, empty_live):
    page = empty_page
    page.open("/download")
    page.check_clean()
    text = page.tab.inner_text("#no-data")
    assert "There is no data yet" in text
    assert f"POST {empty_live.url}/upload" in text
    links = page.tab.eval_on_selector_all(
        "#no-data a", "els => els.map(a => a.pathname)"
    )
    assert "/uploadhelp" in links
    assert page.tab.locator("#data-chart").count() == 0

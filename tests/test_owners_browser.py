"""The owners' pages in a real browser (headless Chromium via Playwright, as
tests/test_browser.py drives it): sign up, claim, set the location by lat/lon and
by a map click, see it rounded in public and exact for the owner, sign out."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from co2logserver import accounts, create_app
from co2logserver.store import get_store
from tests.test_browser import (  # noqa: F401 (fixture)
    LiveServer,
    Page,
    chromium,
    screenshot_on_failure,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
EXACT = (48.521234, 9.057891)


def register(server: LiveServer) -> tuple[str, str]:
    """A secure sensor registered over HTTP: ``(suid, secret)``."""
    suid = str(uuid.uuid4())
    status, secret = server.request(
        "PUT", f"/v1/sensors/{suid}", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 200
    return suid, secret


def start(tmp_path_factory, **config) -> LiveServer:
    db = tmp_path_factory.mktemp("owners") / "co2.sqlite"
    app = create_app({"DB": str(db), "RATELIMIT_ENABLED": False, **config})
    return LiveServer(app)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_tiles_down(tmp_path_factory):
    """Tiles configured, but the host cannot be reached (the test refuses it)."""
    server = start(
        tmp_path_factory, MAP_TILE_URL="http://tiles.example.invalid/{z}/{x}/{y}.png"
    )
    yield server
    server.stop()


@pytest.fixture
def page(chromium, live):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    tab = Page(context, live.url)
    yield tab
    context.close()


def sign_up(page: Page, username: str) -> None:
    page.open("/signup")
    page.tab.fill("#username", username)
    page.tab.fill("#password", PASSWORD)
    with page.tab.expect_navigation():
        page.tab.click("#signup-form button")
    assert page.tab.url.endswith("/claim")


def claim(page: Page, suid: str, code: str) -> None:
    page.tab.fill("#suid", suid)
    page.tab.fill("#code", code)
    with page.tab.expect_navigation():
        page.tab.click("#claim-form button")


def text(page: Page, selector: str) -> str:
    return page.tab.inner_text(selector).strip()


@screenshot_on_failure
def test_sign_up_claim_locate_and_sign_out(page, live):
    suid, secret = register(live)
    sign_up(page, "browser-owner")
    claim(page, suid, "0000000000")
    assert text(page, "#form-error") == accounts.CLAIM_REFUSED
    claim(page, suid, accounts.claim_code(secret))
    assert page.tab.url.endswith(f"/my/sensors/{suid}")
    assert "The sensor is yours" in page.tab.inner_text("main")

    page.tab.fill("#latitude", str(EXACT[0]))
    page.tab.fill("#longitude", str(EXACT[1]))
    with page.tab.expect_navigation():
        page.tab.click("#save-position")
    assert "Location saved." in page.tab.inner_text("main")
    assert text(page, "#exact-location") == f"{EXACT[0]}, {EXACT[1]}"
    assert text(page, "#public-location") == "48.52, 9.06 (rounded)"
    check_clean(page, 403)

    page.tab.click("#public-page")
    page.tab.wait_for_url(f"**/sensors/{suid}")
    assert text(page, "#location").startswith("48.52, 9.06")
    assert str(EXACT[0]) not in page.tab.content()
    assert str(EXACT[1]) not in page.tab.content()

    page.open("/my/sensors")
    assert page.tab.locator(f'section.owned[data-suid="{suid}"]').count() == 1
    with page.tab.expect_navigation():
        page.tab.click("#signout")
    assert page.tab.url.endswith("/signin")
    page.open("/my/sensors")  # redirected to the sign-in page
    assert page.tab.url.split("?")[0].endswith("/signin")
    check_clean(page, 403)


def click_map(page: Page, x: int, y: int) -> tuple[float, float]:
    """Click the picker near ``(x, y)``; return the lat/lon Leaflet put there."""
    page.tab.wait_for_selector("html[data-map-ready]", state="attached")
    page.tab.click("#picker", position={"x": x, "y": y})
    picked = page.tab.evaluate("() => window.co2picked")
    # Where the click landed (the element's 1 px border aside): the same place.
    aimed = page.tab.evaluate(
        f"() => window.co2picker.containerPointToLatLng([{x}, {y}]).wrap()"
    )
    assert picked["lat"] == pytest.approx(aimed["lat"], abs=1.0)
    assert picked["lng"] == pytest.approx(aimed["lng"], abs=1.0)
    return round(picked["lat"], 6), round(picked["lng"], 6)


def check_clean(page: Page, *statuses: int) -> None:
    """As Page.check_clean, allowing the error answers the test asked for."""
    expected = {
        f"Failed to load resource: the server responded with a status of {s}"
        for s in statuses
    }
    assert [e for e in page.errors if not any(e.startswith(x) for x in expected)] == []
    assert page.outside == []


def claimed_sensor(page: Page, live: LiveServer, username: str) -> str:
    suid, secret = register(live)
    sign_up(page, username)
    claim(page, suid, accounts.claim_code(secret))
    return suid


@screenshot_on_failure
def test_map_click_sets_the_location(page, live):
    suid = claimed_sensor(page, live, "clicker")
    latitude, longitude = click_map(page, 300, 120)
    assert float(page.tab.input_value("#latitude")) == pytest.approx(latitude, abs=1e-6)
    assert float(page.tab.input_value("#longitude")) == pytest.approx(
        longitude, abs=1e-6
    )
    with page.tab.expect_navigation():
        page.tab.click("#save-position")
    exact = text(page, "#exact-location")
    stored = [float(v) for v in exact.split(", ")]
    assert stored == pytest.approx([latitude, longitude], abs=1e-6)
    with get_store(live.app).reading() as conn:
        row = conn.exec_driver_sql(
            "SELECT latitude, longitude FROM sensors WHERE suid = ?", (suid,)
        ).one()
    assert tuple(row) == pytest.approx((latitude, longitude), abs=1e-6)
    page.check_clean()


@screenshot_on_failure
def test_public_map_shows_rounded_markers_and_hides_hidden_ones(page, live):
    suid = claimed_sensor(page, live, "mapper")
    page.tab.fill("#latitude", "52.123456")
    page.tab.fill("#longitude", "13.654321")
    with page.tab.expect_navigation():
        page.tab.click("#save-position")
    page.tab.fill("#name", "<b>Balcony</b>")
    page.tab.uncheck("#location-public")
    with page.tab.expect_navigation():
        page.tab.click("#save-profile")  # the box unticked: hidden
    page.open("/map")
    page.tab.wait_for_selector("html[data-map-ready]", state="attached")
    assert page.tab.locator(f'#map-table tr[data-suid="{suid}"]').count() == 0
    page.open(f"/my/sensors/{suid}")
    page.tab.check("#location-public")
    with page.tab.expect_navigation():
        page.tab.click("#save-profile")
    page.open("/map")
    page.tab.wait_for_selector("html[data-map-ready]", state="attached")
    row = page.tab.locator(f'#map-table tr[data-suid="{suid}"]')
    assert row.locator("td.loc").inner_text() == "52.12, 13.65"
    assert row.locator("a").inner_text() == "<b>Balcony</b>"  # shown as text
    markers = json.loads(page.tab.inner_text("#map-data"))
    assert {"latitude": 52.12, "longitude": 13.65} in [
        {"latitude": m["latitude"], "longitude": m["longitude"]} for m in markers
    ]
    assert page.tab.evaluate("() => window.co2markers") == len(markers)
    assert "52.123456" not in page.tab.content()
    page.check_clean()


@screenshot_on_failure
def test_sign_in_with_wrong_then_right_password(page, live):
    accounts.create_user(get_store(live.app), "existing", PASSWORD)
    page.open("/signin")
    page.tab.fill("#username", "existing")
    page.tab.fill("#password", "not the password")
    with page.tab.expect_navigation():
        page.tab.click("#signin-form button")
    assert text(page, "#form-error") == accounts.SIGNIN_REFUSED
    page.tab.fill("#password", PASSWORD)
    with page.tab.expect_navigation():
        page.tab.click("#signin-form button")
    assert page.tab.url.endswith("/my/sensors")
    assert "You own no sensor yet" in page.tab.inner_text("main")
    check_clean(page, 401)


def test_picker_works_with_tiles_unreachable(chromium, live_tiles_down):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = Page(context, live_tiles_down.url)
    try:
        suid = claimed_sensor(page, live_tiles_down, "no-tiles")
        latitude, longitude = click_map(page, 200, 200)
        with page.tab.expect_navigation():
            page.tab.click("#save-position")
        stored = [float(v) for v in text(page, "#exact-location").split(", ")]
        assert stored == pytest.approx([latitude, longitude], abs=1e-6)
        page.open(f"/my/sensors/{suid}")
        page.tab.wait_for_function(
            "() => document.getElementById('map-note').textContent.includes('cannot')"
        )
        assert page.outside and all("tiles.example.invalid" in u for u in page.outside)
        # Only the refused tiles may complain; no script error.
        assert all(re.search("Failed to load resource", e) for e in page.errors)
    finally:
        context.close()


def test_form_posted_without_its_token_over_http_is_refused(live):
    """Plain requests, as a forging site's form would post: no CSRF token."""
    import urllib.error
    import urllib.request

    body = b"username=existing&password=correct+horse+battery"
    request = urllib.request.Request(
        live.url + "/signin",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "CSRF token is missing" in refused.value.read().decode()


@pytest.fixture(scope="module")
def nominatim_module():
    from tests.test_owners import Nominatim

    server = Nominatim()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_geocoder(tmp_path_factory, nominatim_module):
    server = start(
        tmp_path_factory, GEOCODER_URL=nominatim_module.url, GEOCODER_TIMEOUT=0.5
    )
    yield server
    server.stop()


def test_address_search_in_the_browser(chromium, live_geocoder, nominatim_module):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = Page(context, live_geocoder.url)
    try:
        suid = claimed_sensor(page, live_geocoder, "geocoded")
        nominatim_module.mode = "hang"
        page.tab.fill("#address-input", "Unter den Linden 1, Berlin")
        with page.tab.expect_navigation():
            page.tab.click("#find-address")
        assert "did not answer in time" in text(page, "#form-error")
        assert text(page, "#exact-location") == "not set"
        nominatim_module.mode = "ok"
        with page.tab.expect_navigation():
            page.tab.click("#find-address")
        assert "Found Berlin; location saved." in page.tab.inner_text("main")
        assert text(page, "#exact-location") == "52.5170365, 13.3888599"
        assert text(page, "#address").startswith("Unter den Linden 1, Berlin")
        page.open(f"/sensors/{suid}")
        assert text(page, "#location").startswith("52.52, 13.39")
        assert "Unter den Linden" not in page.tab.content()
        check_clean(page, 502)
    finally:
        context.close()


@screenshot_on_failure
def test_claim_and_place_in_one_step(page, live):
    """The OpenSmog scenario: SUID, claim code and where it stands, one form."""
    suid, secret = register(live)
    sign_up(page, "one-step")
    page.tab.fill("#claim-latitude", "50.1109221")
    page.tab.fill("#claim-longitude", "8.6821267")
    claim(page, suid, accounts.claim_code(secret))
    assert page.tab.url.endswith(f"/my/sensors/{suid}")
    assert "Location saved." in page.tab.inner_text("main")
    assert text(page, "#exact-location") == "50.1109221, 8.6821267"
    assert text(page, "#public-location") == "50.11, 8.68 (rounded)"
    page.check_clean()

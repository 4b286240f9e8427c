"""Take the screenshots of the documentation: ``python docs/make_screenshots.py``.

Starts co2logserver on a temporary SQLite file on 127.0.0.1, fills it with a few
days of made-up data through its HTTP API, and photographs the pages with the
Debian Chromium (``apt-get install chromium``) through Playwright. The PNGs land in
``docs/_static/screenshots/``; commit them when the pages change.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from co2logserver import create_app  # noqa: E402

OUT = ROOT / "docs" / "_static" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SENSORS = [
    ("0b7c5e2a-3f41-4c47-9d0e-2f6a51c3e001", "Marktplatz", 48.52036, 9.05622, True),
    ("0b7c5e2a-3f41-4c47-9d0e-2f6a51c3e002", "Neckarbrücke", 48.51771, 9.05887, True),
    ("0b7c5e2a-3f41-4c47-9d0e-2f6a51c3e003", "Schönblick", 48.53402, 9.04118, False),
]
SILENT = "6f1d0c9e-8a2b-4e55-b0d1-7d3e9a4f0004"


def request(base: str, method: str, path: str, body: bytes = b"", headers=None):
    """One HTTP request to the server; returns the body text."""
    req = urllib.request.Request(
        base + path, data=body or None, method=method, headers=headers or {}
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.read().decode()


def observations(now: int, days: int, phase: float) -> list[dict]:
    """Every ten minutes: PM with a daily rhythm, temperature and humidity."""
    result = []
    for ts in range(now - days * 86400, now, 600):
        day = math.sin((ts % 86400) / 86400 * 2 * math.pi + phase)
        noise = math.sin(ts / 3700.0) + 0.5 * math.sin(ts / 1300.0)
        result.append(
            {
                "timestamp": ts,
                "readings": {
                    "PM2_5": round(9 + 5 * day + 2 * noise, 1),
                    "PM10": round(16 + 8 * day + 3 * noise, 1),
                    "TEMP": round(6 + 4 * day + noise / 2, 1),
                    "HUM": round(78 - 12 * day + 2 * noise, 1),
                },
            }
        )
    return result


def post(base: str, path: str, items: list[dict], secret: str | None) -> None:
    """Send observations in batches the server accepts."""
    for start in range(0, len(items), 1000):
        body = json.dumps(items[start : start + 1000]).encode()
        headers = {"Content-Type": "application/json"}
        if secret:
            digest = hashlib.sha256(body + secret.encode()).hexdigest()
            headers["Authorization"] = f"OpenSmogHash {digest}"
        request(base, "POST", path, body, headers)


def seed(base: str) -> dict[str, str]:
    """Three sensors over two weeks, one silent rogue, a day of legacy uploads.

    Returns the SECRETs of the secure sensors by SUID.
    """
    now = int(time.time()) // 600 * 600
    secrets = {}
    for index, (suid, place, lat, lon, secure) in enumerate(SENSORS):
        secret = None
        if secure:
            meta = {
                "manufacturer": "OpenSmog",
                "model": f"AQ-{index + 1} {place}",
                "location": {"latitude": lat, "longitude": lon, "elevation": 330},
            }
            secret = request(
                base,
                "PUT",
                f"/v1/sensors/{suid}",
                json.dumps(meta).encode(),
                {"Content-Type": "application/json"},
            )
            secrets[suid] = secret
        route = (
            f"/v1/sensors/{suid}/readings"
            if secure
            else f"/rogue/v1/sensors/{suid}/readings"
        )
        post(base, route, observations(now, 14, index * 0.7), secret)
    old = [{"timestamp": now - 3 * 86400, "readings": {"PM10": 21.0}}]
    post(base, f"/rogue/v1/sensors/{SILENT}/readings", old, None)
    rows = {"time": [], "co2": [], "temperature_c": [], "box": []}
    for ts in range(now - 86400, now, 600):
        rows["time"].append(ts)
        rows["co2"].append(round(520 + 180 * math.sin(ts / 9000.0)))
        rows["temperature_c"].append(round(21 + 1.5 * math.sin(ts / 20000.0), 1))
        rows["box"].append("kitchen")
    request(
        base,
        "POST",
        "/upload",
        json.dumps(rows).encode(),
        {"Content-Type": "application/json"},
    )
    return secrets


def photograph(tab, base: str, name: str, path: str) -> None:
    """One page, at most 1500 pixels high."""
    tab.goto(base + path)
    tab.wait_for_load_state("load")
    height = min(tab.evaluate("document.body.scrollHeight"), 1500)
    clip = {"x": 0, "y": 0, "width": 1200, "height": height}
    tab.screenshot(path=str(OUT / name), clip=clip, full_page=True)
    print("wrote", OUT / name)


def shoot_owners(app, base: str, secrets: dict[str, str]) -> None:
    """The owners' pages (docs/owners.rst): claim, settings, my sensors, the map."""
    from co2logserver import accounts
    from co2logserver.store import get_store

    suid = SENSORS[0][0]
    try:  # a rejected request for the status page (a wrong hash: 401)
        request(
            base,
            "POST",
            f"/v1/sensors/{suid}/readings",
            b'[{"timestamp": 1700000000, "readings": {"PM10": 3}}]',
            {"Authorization": "OpenSmogHash " + "0" * 64},
        )
    except urllib.error.HTTPError:
        pass
    accounts.create_user(get_store(app), "anna@example.org", "correct horse battery")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        tab = browser.new_page(viewport={"width": 1200, "height": 800})
        tab.goto(base + "/signin")
        tab.fill("#username", "anna@example.org")
        tab.fill("#password", "correct horse battery")
        with tab.expect_navigation():
            tab.click("#signin-form button")
        tab.goto(base + "/claim")
        tab.fill("#suid", suid)
        tab.fill("#code", accounts.claim_code(secrets[suid]))
        tab.fill("#claim-latitude", str(SENSORS[0][2]))
        tab.fill("#claim-longitude", str(SENSORS[0][3]))
        tab.screenshot(path=str(OUT / "claim.png"), clip=CLIP_FORM)
        print("wrote", OUT / "claim.png")
        with tab.expect_navigation():
            tab.click("#claim-form button")
        tab.fill("#name", "Marktplatz, 2nd floor")
        with tab.expect_navigation():
            tab.click("#save-profile")
        photograph(tab, base, "owner_sensor.png", f"/my/sensors/{suid}")
        photograph(tab, base, "my_sensors.png", "/my/sensors")
        photograph(tab, base, "map.png", "/map")
        browser.close()


CLIP_FORM = {"x": 0, "y": 0, "width": 1200, "height": 640}


def shoot(base: str) -> None:
    """Photograph each page."""
    pages = {
        "dashboard.png": "/",
        "sensors.png": "/sensors",
        "sensor.png": f"/sensors/{SENSORS[0][0]}?range=7d",
        "datapage.png": "/download?format=html&cols=time,co2,temperature_c,box"
        "&order_by=time,desc&number=144",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        tab = browser.new_page(viewport={"width": 1200, "height": 800})
        for name, path in pages.items():
            photograph(tab, base, name, path)
        browser.close()


def main() -> None:
    """Serve, seed, shoot, stop; ``owners`` as argument: the owners' pages only."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DB": f"{tmp}/co2.sqlite",
                "RATELIMIT_ENABLED": False,
                "NAME": "Tübingen air",
            }
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            secrets = seed(base)
            if sys.argv[1:] != ["owners"]:
                shoot(base)
            shoot_owners(app, base, secrets)
        finally:
            server.shutdown()
            thread.join(timeout=10)


if __name__ == "__main__":
    main()

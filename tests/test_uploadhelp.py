"""``/uploadhelp`` covers both APIs, and its shell examples work as shown.

The page's ``<pre>`` blocks are run with bash and curl against a live gunicorn, so
the help cannot drift from what the server accepts.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.appserver import GunicornServer

SALT = "upload-help-salt"


def pre_blocks(page: str) -> list[str]:
    """The text of every ``<pre><code>`` block, entities undone."""
    return [
        html.unescape(b)
        for b in re.findall(r"<pre><code>(.*?)</code></pre>", page, re.S)
    ]


def shell_block(page: str, marker: str) -> str:
    """The first block containing ``marker``."""
    return next(block for block in pre_blocks(page) if marker in block)


@pytest.fixture(scope="module", params=[False, True], ids=["open", "auth"])
def served(request, tmp_path_factory):
    workdir: Path = tmp_path_factory.mktemp("uploadhelp")
    settings = {
        "DB": str(workdir / "co2.sqlite"),
        "RATELIMIT_ENABLED": "False",
        "UPLOAD_REQUIRES_AUTH": str(request.param),
        "CHECKSUM_SALTS": f'["{SALT}"]',
    }
    with GunicornServer(workdir, settings, workers=1) as server:
        page = requests.get(server.url + "/uploadhelp", timeout=10).text
        yield server, page, request.param


def bash(script: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_page_covers_upload_and_the_opensmog_api(served):
    _server, page, _auth = served
    for words in (
        "POST /upload",
        "The OpenSmog sensor API",
        "1. Register",
        "2. Sign",
        "3. Post readings",
        "sha256(body + SECRET)",
        "/rogue/v1/sensors/",
        "Time columns",
        "<code>time</code>",
    ):
        assert words in page


def test_arduino_sketches_are_shown_with_and_without_auth(served):
    _server, page, auth = served
    assert "On an Arduino" in page
    upload_sketch = shell_block(page, '/upload");')
    assert "http.POST(body)" in upload_sketch
    assert ("Content-SHA256-Salted" in upload_sketch) is auth
    assert "OpenSmogHash " in shell_block(page, "opensmogHash(body, secret)")


def test_upload_shell_example_stores_its_rows(served):
    server, page, auth = served
    script = shell_block(page, f"{server.url}/upload")
    if auth:
        script = script.replace("your-pre-shared-salt", SALT)
    assert bash(script).strip().endswith('{"saved-in-db":2}')
    rows = requests.get(server.url + "/download?format=json", timeout=10).json()
    assert any(str(row.get("time", "")).startswith("2023-11-14") for row in rows)


def test_opensmog_register_sign_post_as_shown(served):
    server, page, _auth = served
    steps = [
        shell_block(page, "SECRET=$(curl"),
        shell_block(page, "HASH=$(printf '%s%s' \"$BODY\""),
        shell_block(page, "Authorization: OpenSmogHash $HASH"),
    ]
    suid = re.search(r"SUID=(\S+)", steps[0])[1]
    script = "\n".join(steps).replace("curl -X POST", "curl -f -X POST", 1)
    out = bash(script)
    assert "PM2_5" in out  # the CSV read-back of the last line
    sensor = requests.get(f"{server.url}/v1/sensors/{suid}", timeout=10).json()
    assert sensor["secure"] is True
    assert sensor["reading_count"] == 3

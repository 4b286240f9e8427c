"""The README's shell examples run as written against a live gunicorn.

Only the address changes (``http://127.0.0.1:8080`` becomes the test server's), so
the README cannot drift from what the server answers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.appserver import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Upload data") : README.index("## Run in production")]
BLOCKS = re.findall(r"```sh\n(.*?)```", SECTION, re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("readme")
    settings = {
        "DB": str(workdir / "co2.sqlite"),
        "RATELIMIT_ENABLED": "False",
        "CHECKSUM_SALTS": '["my-super-secret-psk"]',
    }
    with GunicornServer(workdir, settings, workers=1) as running:
        yield running


def run(block: str, url: str) -> str:
    script = block.replace("http://127.0.0.1:8080", url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_has_the_three_examples():
    assert len(BLOCKS) == 3


def test_upload_example_stores_two_rows_with_times(server):
    out = run(BLOCKS[0], server.url)
    assert out.startswith('{"saved-in-db":2}')
    rows = requests.get(server.url + "/download?format=json", timeout=10).json()
    assert [r["time"] for r in rows[:2]] == [
        "2023-11-14 22:13:20+00:00",
        "2023-11-14 22:14:20+00:00",
    ]


def test_salted_example_matches_its_hash(server):
    assert "a95d28c7" in BLOCKS[1]
    out = run(BLOCKS[1], server.url)
    assert out.strip() == '{"saved-in-db":2}'
    rows = requests.get(server.url + "/download?format=json", timeout=10).json()
    assert rows[-1]["matched_checksums"] == "md5"


def test_opensmog_example_registers_signs_and_reads_back(server):
    out = run(BLOCKS[2], server.url)
    lines = out.strip().splitlines()
    assert lines[0] == "timestamp,type,value,unit,verified"
    assert {line.split(",")[1] for line in lines[1:]} == {"PM2_5", "PM10", "TEMP"}
    assert all(line.endswith(",True") for line in lines[1:])

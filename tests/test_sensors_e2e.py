"""End to end over real HTTP: ``python -m co2logserver`` in a subprocess, driven by a
sensor written against the seed document (issue 3, "done means"), and by the Python
example of the docs."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import opensmog_hash
from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "opensmog_sensor.py"
SUID = "123e4567-e89b-12d3-a456-426655440000"
TIMEOUT = 10


@dataclass
class Served:
    """A running server: its base URL and the file its log goes to."""

    url: str
    log: Path


def clean_environ() -> dict[str, str]:
    """The environment without the developer's co2logserver settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CO2LOGSERVER_", "SENSEMAP_"))
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Served]:
    """``python -m co2logserver -v -f <tmp db> -p <free port>``, stopped by PID."""
    workdir = tmp_path_factory.mktemp("e2e")
    port = free_port()
    log = workdir / "server.log"
    argv = [sys.executable, "-m", "co2logserver", "-v"]
    argv += ["-f", str(workdir / "co2.sqlite"), "-p", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=clean_environ(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, process)
        yield Served(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)


def signed_post(url: str, body: bytes, secret: str, hashed: bytes | None = None):
    """POST readings as the seed document says: OpenSmogHash of the body."""
    digest = opensmog_hash(body if hashed is None else hashed, secret)
    return requests.post(
        f"{url}/v1/sensors/{SUID}/readings",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"OpenSmogHash {digest}",
        },
        timeout=TIMEOUT,
    )


def test_seed_document_sensor(server):
    """Register, post signed, 401 when tampered, resend the buffer, list it back."""
    url = server.url
    registration = requests.put(
        f"{url}/v1/sensors/{SUID}",
        json={
            "manufacturer": "ACME INC",
            "model": "X9000",
            "location": {"latitude": 1.0, "longitude": 1.0, "elevation": 8000.0},
        },
        timeout=TIMEOUT,
    )
    assert registration.status_code == 200
    assert registration.headers["Content-Type"].startswith("text/plain")
    secret = registration.text
    assert re.fullmatch(r"[0-9a-f]{64}", secret)

    t0 = int(time.time()) - 60
    buffer = [
        {"timestamp": t0, "readings": {"PM2_5": 201.1, "PM10": 102.0, "TEMP": 12.7}},
    ]
    first = json.dumps(buffer, indent="\t").encode()
    response = signed_post(url, first, secret)
    assert (response.status_code, response.content) == (200, b"")

    tampered = first.replace(b"201.1", b"21.1")
    response = signed_post(url, tampered, secret, hashed=first)
    assert response.status_code == 401
    assert "OpenSmogHash" in response.json()["error"]
    response = requests.post(
        f"{url}/v1/sensors/{SUID}/readings", data=first, timeout=TIMEOUT
    )
    assert response.status_code == 403

    # The reply to the next post is "lost": the sensor resends its whole buffer.
    buffer.append({"timestamp": t0 + 1, "readings": {"PM2_5": 202.1, "PM10": 101.0}})
    whole = json.dumps(buffer).encode()
    assert signed_post(url, whole, secret).status_code == 200
    assert signed_post(url, whole, secret).status_code == 200

    page = requests.get(
        f"{url}/v1/sensors/{SUID}/readings", params={"limit": 3}, timeout=TIMEOUT
    ).json()
    readings = page["readings"]
    while page["next"]:
        page = requests.get(
            f"{url}/v1/sensors/{SUID}/readings",
            params={"limit": 3, "cursor": page["next"]},
            timeout=TIMEOUT,
        ).json()
        readings += page["readings"]
    assert [(r["timestamp"], r["type"], r["value"]) for r in readings] == [
        (t0, "PM10", 102.0),
        (t0, "PM2_5", 201.1),
        (t0, "TEMP", 12.7),
        (t0 + 1, "PM10", 101.0),
        (t0 + 1, "PM2_5", 202.1),
    ]
    assert {r["verified"] for r in readings} == {True}

    response = requests.get(
        f"{url}/v1/sensors/{SUID}/readings", params={"format": "csv"}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == ["timestamp", "type", "value", "unit", "verified"]
    assert rows[1:] == [
        [str(r["timestamp"]), r["type"], str(r["value"]), r["unit"], "True"]
        for r in readings
    ]

    view = requests.get(f"{url}/v1/sensors/{SUID}", timeout=TIMEOUT).json()
    assert view["secure"] is True
    assert view["reading_count"] == 5
    assert secret not in server.log.read_text(errors="replace")


def test_python_example_registers_once_and_posts_signed(server, tmp_path):
    state = tmp_path / "state"

    def run_example(count: int) -> None:
        """Run the example as a sensor would: ``count`` measurements a second apart."""
        argv = [sys.executable, str(EXAMPLE), "--server", server.url]
        argv += ["--state", str(state), "--count", str(count), "--interval", "1.05"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=clean_environ()
        )
        assert result.returncode == 0, result.stderr
        assert secret_text() not in result.stdout + result.stderr

    def secret_text() -> str:
        """The SECRET as the example keeps it."""
        return (state / "secret").read_text()

    run_example(2)
    suid = (state / "suid").read_text().strip()
    secret = secret_text()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert stat.S_IMODE((state / "secret").stat().st_mode) == 0o600

    time.sleep(1.1)  # the next run's timestamp must not repeat the last one
    run_example(1)
    assert secret_text() == secret, "the example registered only once"

    readings = requests.get(
        f"{server.url}/v1/sensors/{suid}/readings", timeout=TIMEOUT
    ).json()["readings"]
    assert len({r["timestamp"] for r in readings}) == 3
    assert {r["type"] for r in readings} == {"PM10", "TEMP"}
    assert {r["verified"] for r in readings} == {True}

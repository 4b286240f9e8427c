#!/usr/bin/env python3
"""A sensor of the OpenSmog API in plain Python (standard library only).

It registers once (``PUT /v1/sensors/<SUID>``) and keeps the SECRET in a file,
then measures, buffers and posts signed readings. When a post fails for a reason
that may pass (no network, 429, 5xx) the whole buffer is sent again next time:
the server stores each (timestamp, type) once, so resending is always safe.

    python3 opensmog_sensor.py --server http://127.0.0.1:8080 --count 3

Replace :func:`measure` with your sensor driver.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

#: What a sensor keeps unsent at most; the server takes 1000 observations a request.
MAX_BUFFER = 1000
#: Statuses after which the same request may succeed later: keep the buffer.
RETRY_LATER = {408, 429, 500, 502, 503, 504}


def measure() -> dict[str, float]:
    """One set of readings (a stand-in: replace with your sensor driver)."""
    t = time.time() / 600
    return {"PM10": round(20 + 5 * math.sin(t), 1), "TEMP": round(18 + math.cos(t), 1)}


def request(method: str, url: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    """Send one request; return (status, body). Network errors are status 0."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:  # no route, refused, timed out: try again later
        print(f"network error: {error}", file=sys.stderr)
        return 0, b""


def load_identity(state: Path) -> str:
    """The SUID: made once (a manufacturer prints it on the device) and kept."""
    path = state / "suid"
    if not path.exists():
        path.write_text(str(uuid.uuid4()))
    return path.read_text().strip()


def load_or_register(server: str, suid: str, state: Path, metadata: dict) -> str:
    """The SECRET from its file, or register and keep the SECRET it answers.

    The SECRET is shown by the server only once: it is written before anything
    else happens, readable only by its owner, and never printed.
    """
    path = state / "secret"
    if path.exists():
        return path.read_text().strip()
    status, body = request(
        "PUT",
        f"{server}/v1/sensors/{suid}",
        json.dumps(metadata).encode(),
        {"Content-Type": "application/json"},
    )
    if status != 200:
        sys.exit(f"registration failed ({status}): {body.decode(errors='replace')}")
    secret = body.decode("ascii").strip()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret)
    print(f"registered {suid}; SECRET kept in {path}")
    return secret


def claim_code(secret: str) -> str:
    """The claim code its owner enters on the server's ``/claim`` page (§12)."""
    return hashlib.sha256(("claim:" + secret).encode()).hexdigest()[:10]


def opensmog_hash(body: bytes, secret: str) -> str:
    """sha256 of the exact body bytes with the SECRET's 64 hex characters appended."""
    return hashlib.sha256(body + secret.encode("ascii")).hexdigest()


def post_buffer(server: str, suid: str, secret: str, buffer: list[dict]) -> int:
    """Post every buffered observation in one signed request; return the status."""
    body = json.dumps(buffer, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"OpenSmogHash {opensmog_hash(body, secret)}",
    }
    url = f"{server}/v1/sensors/{suid}/readings"
    status, reply = request("POST", url, body, headers)
    if status not in (0, 200):
        message = reply.decode(errors="replace")
        print(f"post refused ({status}): {message}", file=sys.stderr)
    return status


def run(server: str, state: Path, count: int, interval: float, metadata: dict) -> int:
    """Measure ``count`` times (0: forever), posting the buffer after each measure."""
    state.mkdir(parents=True, exist_ok=True)
    suid = load_identity(state)
    secret = load_or_register(server, suid, state, metadata)
    print(f"SUID {suid}, claim code {claim_code(secret)}: claim it at {server}/claim")
    buffer: list[dict] = []
    taken = 0
    while count == 0 or taken < count:
        buffer.append({"timestamp": int(time.time()), "readings": measure()})
        del buffer[:-MAX_BUFFER]  # full: the oldest observations go first
        taken += 1
        status = post_buffer(server, suid, secret, buffer)
        if status == 200:
            buffer.clear()
        elif status in (401, 403):
            # The SECRET no longer counts: the SUID was registered again (from
            # elsewhere, or after an operator reset). Delete the secret file to
            # register anew; re-registering on its own would hide a takeover.
            print("SECRET refused: delete the secret file to register again")
            return 1
        elif status not in RETRY_LATER and status != 0:
            buffer.clear()  # 400/413: this data will never be accepted
        if count == 0 or taken < count:
            time.sleep(interval)
    return 0 if not buffer else 2


def main() -> int:
    """Command line: where the server is and where to keep the sensor's state."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--state", type=Path, default=Path("opensmog-state"))
    parser.add_argument("--count", type=int, default=0, help="0: run forever")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    metadata = {"manufacturer": "DIY", "model": "opensmog_sensor.py"}
    return run(args.server.rstrip("/"), args.state, args.count, args.interval, metadata)


if __name__ == "__main__":
    sys.exit(main())

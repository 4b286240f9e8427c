"""Requests as the airrohr firmware (sensor.community, NRZ-2024-135) writes them.

``sendDataToOptionalApis`` builds the custom-API body by string concatenation:
``{"esp8266id": "<chip>", `` + the node's data string without its first ``{``, i.e.
``"software_version": "NRZ-2024-135", "sensordatavalues":[`` + one
``{"value_type":"<t>","value":"<v>"},`` per value (``add_Value2Json``), the last
comma removed, ``]}``. ``sendData(LoggerCustom, ...)`` then posts it with the
ESP8266 core's HTTPClient (platform espressif8266@2.6.2, core 2.7.4), whose
``sendHeader`` writes the request line, ``Host`` (``:port`` unless 80/443),
``User-Agent`` (``<version>/<chip>/<mac>``), ``Connection: close``,
``Accept-Encoding``, ``Authorization: Basic`` (only when the custom API's User or
Password is set), then the added headers in order: ``Content-Type``, ``X-Sensor``,
``X-MAC-ID``, ``Content-Length``. The ESP32 core's HTTPClient (espressif32@1.11.1)
writes the same lines; an ESP32 node is ``esp32-<chip id in hex>`` and, as the
firmware sets its MAC id only on the ESP8266, sends an empty one. Captures of such
requests are in ``tests/data/airrohr``; :func:`request_bytes` rebuilds them byte for
byte.
"""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from pathlib import Path

SOFTWARE_VERSION = "NRZ-2024-135"
PATH = "/airrohr/v1/push"
CAPTURES = Path(__file__).parent / "data" / "airrohr"


def body_bytes(chip: str, values: list[tuple[str, str]]) -> bytes:
    """The custom-API body of a node with chip id ``chip``, values in send order."""
    data = '{"software_version": "' + SOFTWARE_VERSION + '", "sensordatavalues":['
    for value_type, value in values:
        data += '{"value_type":"' + value_type + '","value":"' + value + '"},'
    if data.endswith(","):
        data = data[:-1]
    data += "]}"
    return ('{"esp8266id": "' + chip + '", ' + data[1:]).encode()


def request_bytes(
    host: str,
    port: int,
    body: bytes,
    chip: str,
    mac: str,
    user: str = "",
    password: str = "",
    basename: str = "esp8266-",
) -> bytes:
    """The whole HTTP request ``sendData(LoggerCustom, ...)`` writes to the socket."""
    head = f"POST {PATH} HTTP/1.1\r\nHost: {host}"
    if port not in (80, 443):
        head += f":{port}"
    head += f"\r\nUser-Agent: {SOFTWARE_VERSION}/{chip}/{mac}\r\nConnection: close\r\n"
    head += "Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n"
    if user or password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        head += f"Authorization: Basic {token}\r\n"
    head += "Content-Type: application/json\r\n"
    head += f"X-Sensor: {basename}{chip}\r\nX-MAC-ID: {basename}{mac}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def capture(name: str) -> bytes:
    """A captured request from ``tests/data/airrohr``."""
    return (CAPTURES / name).read_bytes()


@dataclass
class Answer:
    """What the server answered, as the firmware's HTTPClient reads it."""

    status: int
    headers: dict[str, str]
    body: bytes


def send(url: str, raw: bytes, timeout: float = 10) -> Answer:
    """Write ``raw`` to the server of ``url`` as is and read the answer to EOF."""
    host, _, port = url.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)

"""Blueprint ``airrohr``: ``POST /airrohr/v1/push``, airrohr's custom-API target.

The firmware counts 200-208 as sent and drops the data on anything else, printing
the status and the body in its debug log: so success is a bare 200 with an empty
body (never a redirect), and every refusal the one JSON error naming what was wrong.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, request

from co2logserver import limits
from co2logserver.protocols import airrohr
from co2logserver.web.common import request_bodies, submit_devices
from co2logserver.web.openapi.parts import responses

bp = Blueprint("airrohr", __name__)


def node_key() -> str:
    """The rate-limit key, from the ``X-Sensor`` header before the body is read.

    Without the header (not the firmware) the node is known only after parsing:
    such requests share their address's key here and are counted per node later.
    """
    sensor = request.headers.get("X-Sensor")
    if sensor:
        return f"airrohr:{sensor}"
    return f"airrohr-no-x-sensor:{limits.client_address()}"


@bp.post("/airrohr/v1/push")
@limits.per_device(node_key)
def push():
    """Store one push of every sensor of an airrohr node; 200, empty, once committed."""
    received = int(time.time())
    _, body = request_bodies()
    parsed = airrohr.parse_push(body, request.headers, received)
    if not request.headers.get("X-Sensor"):
        limits.hit_sensor_limit(f"airrohr:{parsed.node}")
    submit_devices(parsed.request, parsed.ignored_fields)
    return Response(b"", status=200)


PUSH_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "esp8266id": {
            "type": "string",
            "description": "Chip id; the node is esp8266-<esp8266id> without X-Sensor.",
        },
        "software_version": {"type": "string"},
        "sensordatavalues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "value_type": {"type": "string", "example": "SDS_P1"},
                    "value": {
                        "oneOf": [{"type": "string"}, {"type": "number"}],
                        "example": "12.40",
                    },
                },
                "required": ["value_type", "value"],
            },
        },
    },
    "required": ["sensordatavalues"],
}

OPENAPI_PATHS: dict[str, Any] = {
    "/airrohr/v1/push": {
        "post": {
            "summary": 'airrohr (sensor.community) "Send data to custom API" push',
            "description": (
                "Every sensor of the node becomes a sensor airrohr:<node>:<type> "
                "(SDS, BME280, DHT, NODE, ...). A secure sensor sends its SECRET "
                "as the HTTP Basic password (Authorization: Basic). Time is the "
                "receive time."
            ),
            "tags": ["protocols"],
            "parameters": [
                {
                    "name": "X-Sensor",
                    "in": "header",
                    "required": False,
                    "description": "The node, esp8266-<chip id> or esp32-<chip id>.",
                    "schema": {"type": "string", "example": "esp8266-1234567"},
                },
                {
                    "name": "X-MAC-ID",
                    "in": "header",
                    "required": False,
                    "description": "Sent by the firmware; not used.",
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PUSH_BODY}},
            },
            "responses": responses(
                {"200": {"description": "Stored (empty body)."}},
                ("400", "401", "403", "405", "411", "413", "415"),
            ),
        }
    }
}

"""Blueprint ``lorawan``: the network-server webhooks of SPEC §9.3.

``POST /lorawan/v1/ttn`` takes The Things Stack v3's "Uplink message" webhook,
``POST /lorawan/v1/chirpstack?event=up`` ChirpStack v4's HTTP integration. Order of
checks, cheapest first: the feature is on (404), the request carries one of
``CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS`` in ``X-Webhook-Secret`` (401; no body read
before), the body parses (400/413/415), the device is under its rate limit (429),
and the readings commit (503 when the database is away).

The per-address limit does not apply here: a network server sends every device's
uplinks from a few addresses, so it would throttle a whole network. Each device is
limited by ``CO2LOGSERVER_RATELIMIT_SENSOR``, counted by DevEUI once the body names
it (:func:`co2logserver.limits.hit_sensor_limit`); a request without the secret is
refused before its body is read.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Blueprint, Response, request

from co2logserver import limits
from co2logserver.errors import NotFound, UnsupportedMediaType, WrongCredential
from co2logserver.protocols import lorawan
from co2logserver.web.common import request_bodies, settings, submit_devices
from co2logserver.web.openapi.parts import responses

bp = Blueprint("lorawan", __name__)

SECRET_HEADER = "X-Webhook-Secret"
SECRETS_KEY = "CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS"
#: What the network servers send when set to a binary (Protobuf) format.
BINARY_TYPES = ("application/octet-stream", "application/x-protobuf")


def check_secret() -> None:
    """The feature is on and the request carries one of its secrets.

    :raise NotFound: 404 while no secret is configured (the webhooks are off).
    :raise WrongCredential: 401 for a missing or wrong ``X-Webhook-Secret``.
    """
    secrets = settings()[SECRETS_KEY]
    if not secrets:
        raise NotFound(
            f"The LoRaWAN webhooks are off: set {SECRETS_KEY} to a list of secrets "
            f"and send one in the {SECRET_HEADER} header (see the LoRaWAN page of "
            "the docs)"
        )
    given = request.headers.get(SECRET_HEADER, "").encode()
    # Compare with every secret so the time taken does not tell which one was close.
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(secret.encode(), given)
    if not given or not found:
        raise WrongCredential(
            f"The {SECRET_HEADER} header is {'wrong' if given else 'missing'}: add "
            f"it to the webhook's headers with one of {SECRETS_KEY}"
        )


def json_body(fix: str) -> bytes:
    """The decoded body, refusing the servers' binary (Protobuf) formats.

    :raise UnsupportedMediaType: 415 for Protobuf; 413 and 400 from the body.
    """
    if request.mimetype in BINARY_TYPES:
        raise UnsupportedMediaType(
            f"The body is {request.mimetype} (Protobuf), not JSON: {fix}"
        )
    return request_bodies()[1]


def store_uplink(uplink: lorawan.Uplink | None, ignored_why: str):
    """Store a parsed uplink (after its device's rate limit), or answer an ignore.

    :raise TooManyRequests: 429 when the device is over its limit.
    :raise StorageUnavailable: 503 when the database is away.
    """
    if uplink is None:
        return {"ignored": ignored_why}
    limits.hit_sensor_limit(uplink.device)
    submit_devices(uplink.request, uplink.ignored)
    return Response(b"", status=200)


def clock() -> tuple[float, float]:
    """Now and the allowed clock skew, for the uplink's time."""
    return time.time(), settings()["CO2LOGSERVER_MAX_CLOCK_SKEW"]


@bp.post("/lorawan/v1/ttn")
def ttn():
    """An uplink of The Things Stack v3 (webhook format JSON)."""
    check_secret()
    body = json_body('set the webhook\'s "Webhook format" to JSON')
    return store_uplink(
        lorawan.parse_ttn(body, *clock()),
        "not an uplink_message (or a simulated one): nothing to store",
    )


@bp.post("/lorawan/v1/chirpstack")
def chirpstack():
    """An event of ChirpStack v4's HTTP integration; ``?event=up`` is stored."""
    check_secret()
    event = request.args.get("event")
    if event and event != lorawan.CHIRPSTACK_UPLINK:
        return store_uplink(None, f"event {event[:40]} carries no readings")
    body = json_body('set the HTTP integration\'s "Payload encoding" to JSON')
    return store_uplink(lorawan.parse_chirpstack(body, event, *clock()), "")


def operation(summary: str, description: str, parameters: list) -> dict[str, Any]:
    """The OpenAPI operation of one webhook."""
    return {
        "post": {
            "summary": summary,
            "description": description,
            "tags": ["lorawan"],
            "parameters": [
                {
                    "name": SECRET_HEADER,
                    "in": "header",
                    "required": True,
                    "description": f"One of {SECRETS_KEY}.",
                    "schema": {"type": "string"},
                },
                *parameters,
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": responses(
                {"200": {"description": "Stored (empty body) or ignored."}},
                ("400", "401", "404", "405", "413", "415"),
            ),
        }
    }


OPENAPI_PATHS = {
    "/lorawan/v1/ttn": operation(
        "The Things Stack v3 uplink webhook (JSON).",
        "The numeric leaves of uplink_message.decoded_payload become readings of "
        "the sensor lorawan:<DevEUI>; off (404) until "
        f"{SECRETS_KEY} is set.",
        [],
    ),
    "/lorawan/v1/chirpstack": operation(
        "ChirpStack v4 HTTP integration event (JSON marshaler).",
        "event=up stores the numeric leaves of object as readings of the sensor "
        "lorawan:<devEui>; other events are answered 200 and ignored.",
        [
            {
                "name": "event",
                "in": "query",
                "required": True,
                "description": "up, join, status, ack, txack, log, location, ...",
                "schema": {"type": "string"},
            }
        ],
    ),
}

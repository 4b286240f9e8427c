"""A local stand-in of the OpenSenseMap (OSEM) HTTP API, as far as sensemapi uses it.

It answers on 127.0.0.1 in the shapes of the real API (restify error bodies
``{"code": ..., "message": ...}``, boxes with ``currentLocation``/``loc``, sensors
with ``_id``/``title``/``unit``/``sensorType``/``icon``/``lastMeasurement``), so
that tests drive the real ``sensemapi`` client over real HTTP:

* ``POST /users/sign-in``, ``POST /users/refresh-auth``, ``POST /users/sign-out``
* ``GET /users/me`` and ``GET /users/me/boxes`` (paged like the live API)
* ``POST /boxes``, ``GET|PUT|DELETE /boxes/<id>``
* ``POST /boxes/<id>/data`` (CSV, as sensemapi's ``post_measurements`` sends it)
  and ``POST /boxes/<id>/<sensor id>`` (one JSON measurement)

As on the live API, JSON web tokens expire (:meth:`OsemStandin.expire_tokens`),
new boxes require their ``access_token`` for posting measurements (``useAuth``),
and ``POST /boxes`` ignores ``description`` and ``weblink`` (only ``PUT`` sets
them).  Failure switches: :attr:`OsemStandin.down`, :attr:`OsemStandin.fail_status`,
:attr:`OsemStandin.hang` and :attr:`OsemStandin.refuse_box_names`.  State lives in
memory only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

LOCALHOST = "127.0.0.1"
EXPOSURES = ("indoor", "outdoor", "mobile", "unknown")
MAX_MEASUREMENTS = 2500
#: Longest time a request is held while :attr:`OsemStandin.hang` is on.
HANG_LIMIT = 60.0
PAGE_SIZE = 25
JWT_INVALID = "Invalid JWT authorization. Please sign in to obtain new JWT."
REFRESH_INVALID = (
    "Refresh token invalid or too old. Please sign in with your username and password."
)
ERROR_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    415: "UnsupportedMediaType",
    422: "UnprocessableEntity",
    429: "TooManyRequests",
    500: "InternalServer",
    502: "BadGateway",
    503: "ServiceUnavailable",
}

JsonDict = dict[str, Any]


class ApiError(Exception):
    """An error answer of the API: ``status`` and the restify-style message."""

    def __init__(self, status: int, message: str) -> None:
        """Remember the HTTP status and the message sent to the client."""
        super().__init__(message)
        self.status = status
        self.message = message


class _QuietHandler(WSGIRequestHandler):
    """One request per connection, no access log.

    HTTP/1.0 closes each connection after its answer, so no pooled keep-alive
    connection outlives :meth:`OsemStandin.stop`: once down, clients really get
    "connection refused".
    """

    protocol_version = "HTTP/1.0"

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """Keep test output clean; tests read :attr:`OsemStandin.calls` instead."""


def osem_time(moment: dt.datetime) -> str:
    """Format a time as the API does: RFC 3339 in UTC with milliseconds."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    """Parse an RFC 3339 time, as the API accepts it for ``createdAt``."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(dt.UTC)


def parse_location(value: Any) -> list[float]:
    """Turn ``{lat, lng[, height]}`` or ``[lng, lat[, height]]`` into coordinates."""
    if isinstance(value, dict):
        coords = [value.get("lng"), value.get("lat")]
        if value.get("height") is not None:
            coords.append(value["height"])
    elif isinstance(value, list) and len(value) in (2, 3):
        coords = list(value)
    else:
        raise ApiError(422, "Illegal value for parameter location. missing lat or lng")
    try:
        coords = [float(c) for c in coords]
    except (TypeError, ValueError):
        raise ApiError(422, "Illegal value for parameter location.") from None
    if not (-180 <= coords[0] <= 180 and -90 <= coords[1] <= 90):
        raise ApiError(422, "Illegal value for parameter location. out of range")
    return coords


def new_id() -> str:
    """A fresh 24-hex-digit id, like the API's MongoDB ObjectIds."""
    return secrets.token_hex(12)


class OsemStandin:
    """In-memory OpenSenseMap API served by werkzeug in a background thread."""

    def __init__(
        self,
        email: str = "forwarder@example.org",
        username: str = "co2logserver-test",
        password: str = "stand-in-Passw0rd",
    ) -> None:
        """Create one user account; call :meth:`start` to listen."""
        self.email = email
        self.username = username
        self.password = password
        self.boxes: dict[str, JsonDict] = {}
        self.measurements: list[JsonDict] = []
        self.calls: list[tuple[str, str]] = []
        self.issued_secrets: set[str] = set()
        self.fail_status: int | None = None
        #: (method, path regex) -> status: answer just those requests with an error.
        self.fail_routes: dict[tuple[str, str], int] = {}
        self._answering = threading.Event()
        self._answering.set()
        self.refuse_box_names: set[str] = set()
        self.page_size = PAGE_SIZE
        self.port = 0
        self._tokens: set[str] = set()
        self._refresh_tokens: set[str] = set()
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = Map(
            [
                Rule("/users/sign-in", methods=["POST"], endpoint=self._sign_in),
                Rule("/users/refresh-auth", methods=["POST"], endpoint=self._refresh),
                Rule("/users/sign-out", methods=["POST"], endpoint=self._sign_out),
                Rule("/users/me", methods=["GET"], endpoint=self._me),
                Rule("/users/me/boxes", methods=["GET"], endpoint=self._my_boxes),
                Rule("/boxes", methods=["POST"], endpoint=self._new_box),
                Rule("/boxes/<box_id>", methods=["GET"], endpoint=self._get_box),
                Rule("/boxes/<box_id>", methods=["PUT"], endpoint=self._update_box),
                Rule("/boxes/<box_id>", methods=["DELETE"], endpoint=self._delete_box),
                Rule("/boxes/<box_id>/data", methods=["POST"], endpoint=self._data),
                Rule(
                    "/boxes/<box_id>/<sensor_id>",
                    methods=["POST"],
                    endpoint=self._one_measurement,
                ),
            ]
        )

    # ------------------------------------------------------------------ serving

    @property
    def url(self) -> str:
        """Base address to give sensemapi as ``api``, ending in a slash."""
        return f"http://{LOCALHOST}:{self.port}/"

    @property
    def running(self) -> bool:
        """True while the server listens."""
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on 127.0.0.1: a free port at first, the same one later."""
        if self._server is not None:
            return
        self._server = make_server(
            LOCALHOST,
            self.port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"osem-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the socket: new connections are refused."""
        self._answering.set()  # let held requests finish
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def down(self) -> bool:
        """Whether the stand-in is unreachable (nothing listens on its port)."""
        return not self.running

    @down.setter
    def down(self, value: bool) -> None:
        """``True`` stops the server, ``False`` starts it again on the same port."""
        if value:
            self.stop()
        else:
            self.start()

    @property
    def hang(self) -> bool:
        """Whether requests are accepted but not answered (a blackholed API)."""
        return not self._answering.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        """``True`` holds new requests unprocessed; ``False`` answers again.

        A held request is never processed: when released (or after a minute) it gets
        a 503, as if its connection had dropped.
        """
        if value:
            self._answering.clear()
        else:
            self._answering.set()

    # ------------------------------------------------------------ test helpers

    def expire_tokens(self, refresh_too: bool = False) -> None:
        """Invalidate all JSON web tokens (and refresh tokens), as time would."""
        with self._lock:
            self._tokens.clear()
            if refresh_too:
                self._refresh_tokens.clear()

    def rotate_access_token(self, box_id: str) -> None:
        """Give a box a new access token, as "generate_access_token" does."""
        with self._lock:
            self.boxes[box_id]["access_token"] = self._secret(32)

    def box_by_name(self, name: str) -> JsonDict | None:
        """The stored box named ``name``, or None."""
        return next((b for b in self.boxes.values() if b["name"] == name), None)

    def count(self, method: str, path_pattern: str) -> int:
        """How many requests matched ``method`` and the full-match regex."""
        regex = re.compile(path_pattern)
        return sum(m == method and bool(regex.fullmatch(p)) for m, p in self.calls)

    def data_posts(self, box_id: str) -> int:
        """How many ``POST /boxes/<box_id>/data`` requests arrived."""
        return self.count("POST", f"/boxes/{box_id}/data")

    # --------------------------------------------------------------- dispatch

    def _wsgi(self, environ: dict, start_response: Callable) -> Any:
        """WSGI entry: record the call, apply failure switches, route."""
        request = Request(environ)
        with self._lock:
            self.calls.append((request.method, request.path))
        if not self._answering.is_set():
            # A blackhole: the request is never processed, only dropped late.
            self._answering.wait(HANG_LIMIT)
            response = self._error(503, "stand-in dropped a held request")
            return response(environ, start_response)
        with self._lock:
            response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        """Route one request and turn errors into restify-style JSON."""
        if self.fail_status is not None:
            return self._error(self.fail_status, "stand-in is failing on purpose")
        for (method, pattern), status in self.fail_routes.items():
            if request.method == method and re.fullmatch(pattern, request.path):
                return self._error(status, f"stand-in refuses {method} {pattern}")
        try:
            endpoint, args = self._routes.bind_to_environ(request.environ).match()
            status, body = endpoint(request, **args)
        except ApiError as error:
            return self._error(error.status, error.message)
        except HTTPException as error:
            return self._error(error.code or 500, error.description or error.name)
        return self._json(status, body)

    def _json(self, status: int, body: Any) -> Response:
        """A JSON answer."""
        return Response(
            json.dumps(body), status=status, content_type="application/json"
        )

    def _error(self, status: int, message: str) -> Response:
        """An error answer shaped like restify-errors'."""
        code = ERROR_CODES.get(status, "Error")
        response = self._json(status, {"code": code, "message": message})
        if status == 429:
            response.headers["Retry-After"] = "0"
        return response

    # ---------------------------------------------------------- request parts

    def _secret(self, nbytes: int = 24) -> str:
        """A new random token, remembered so tests can look for leaks."""
        value = secrets.token_hex(nbytes)
        self.issued_secrets.add(value)
        return value

    @staticmethod
    def _body(request: Request) -> JsonDict:
        """The JSON object body, or a 400."""
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            raise ApiError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Expected a JSON object")
        return body

    def _authorize(self, request: Request) -> None:
        """Require a valid ``Authorization: Bearer <jwt>`` (403 like the API)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            raise ApiError(403, JWT_INVALID)

    def _own_box(self, request: Request, box_id: str) -> JsonDict:
        """The user's box ``box_id`` for a signed-in request."""
        self._authorize(request)
        box = self._box(box_id)
        if box["_id"] not in self._user_box_ids():
            raise ApiError(403, "User does not own this senseBox")
        return box

    def _box(self, box_id: str) -> JsonDict:
        """Any box by id, or a 404."""
        box = self.boxes.get(box_id)
        if box is None:
            raise ApiError(404, "Box not found")
        return box

    def _user_box_ids(self) -> list[str]:
        """Ids of the boxes of the one user."""
        return list(self.boxes)

    def _user(self) -> JsonDict:
        """The user as the API shows it to its owner."""
        return {
            "name": self.username,
            "email": self.email,
            "role": "user",
            "language": "en_US",
            "boxes": self._user_box_ids(),
            "emailIsConfirmed": True,
        }

    def _issue_tokens(self) -> JsonDict:
        """New JWT and refresh token."""
        token, refresh = self._secret(), self._secret()
        self._tokens.add(token)
        self._refresh_tokens.add(refresh)
        return {"token": token, "refreshToken": refresh}

    # ------------------------------------------------------------------ users

    def _sign_in(self, request: Request) -> tuple[int, JsonDict]:
        """Sign in with email or name and password."""
        body = self._body(request)
        login = str(body.get("email", ""))
        known = login.lower() == self.email.lower() or login == self.username
        if not known or body.get("password") != self.password:
            raise ApiError(403, "User and or password not valid!")
        return 200, {
            "code": "Authorized",
            "message": "Successfully signed in",
            "data": {"user": self._user()},
            **self._issue_tokens(),
        }

    def _refresh(self, request: Request) -> tuple[int, JsonDict]:
        """Trade a refresh token for new tokens (no JWT needed, as on the API)."""
        refresh = self._body(request).get("token")
        if refresh not in self._refresh_tokens:
            raise ApiError(403, REFRESH_INVALID)
        self._refresh_tokens.discard(refresh)
        return 200, {
            "code": "Authorized",
            "message": "Successfully refreshed auth",
            "data": {"user": self._user()},
            **self._issue_tokens(),
        }

    def _sign_out(self, request: Request) -> tuple[int, JsonDict]:
        """Invalidate the JWT of the request."""
        self._authorize(request)
        token = request.headers["Authorization"].partition(" ")[2]
        self._tokens.discard(token)
        return 200, {"code": "Ok", "message": "Successfully signed out"}

    def _me(self, request: Request) -> tuple[int, JsonDict]:
        """The signed-in user's details."""
        self._authorize(request)
        return 200, {"code": "Ok", "data": {"me": self._user()}}

    def _my_boxes(self, request: Request) -> tuple[int, JsonDict]:
        """The user's boxes with secrets, :attr:`page_size` per ``page``."""
        self._authorize(request)
        try:
            page = max(int(request.args.get("page", 0)), 0)
        except ValueError:
            raise ApiError(422, "Parameter page is not parseable") from None
        ids = self._user_box_ids()
        chosen = ids[page * self.page_size : (page + 1) * self.page_size]
        boxes = [self._box_json(self.boxes[i], secrets=True) for i in chosen]
        data = {"boxes": boxes, "boxes_count": len(ids), "sharedBoxes": []}
        return 200, {"code": "Ok", "data": data}

    # ------------------------------------------------------------------ boxes

    def _new_box(self, request: Request) -> tuple[int, JsonDict]:
        """Create a box; like the API, ``description``/``weblink`` are not taken."""
        self._authorize(request)
        body = self._body(request)
        for required in ("name", "location"):
            if not body.get(required):
                raise ApiError(400, f"missing required parameter {required}")
        exposure = body.get("exposure", "unknown")
        if exposure not in EXPOSURES:
            raise ApiError(422, "Illegal value for parameter exposure.")
        sensors = body.get("sensors") or []
        if not sensors:
            raise ApiError(422, "sensors are required if model is invalid or missing.")
        now = dt.datetime.now(dt.UTC)
        location = {
            "type": "Point",
            "coordinates": parse_location(body["location"]),
            "timestamp": osem_time(now),
        }
        box = {
            "_id": new_id(),
            "name": str(body["name"]).strip(),
            "exposure": exposure,
            "grouptag": body.get("grouptag"),
            "model": "custom",
            "createdAt": osem_time(now),
            "updatedAt": osem_time(now),
            "currentLocation": location,
            "sensors": [self._new_sensor(s) for s in sensors],
            "access_token": self._secret(32),
            "useAuth": body.get("useAuth", True) not in (False, "false"),
        }
        self.boxes[box["_id"]] = box
        data = self._box_json(box, secrets=True)
        return 201, {"message": "Box successfully created", "data": data}

    def _get_box(self, request: Request, box_id: str) -> tuple[int, JsonDict]:
        """One box, publicly (no secrets)."""
        return 200, self._box_json(self._box(box_id), secrets=False)

    def _update_box(self, request: Request, box_id: str) -> tuple[int, JsonDict]:
        """Change box properties, location and sensors (new/edited/deleted)."""
        box = self._own_box(request, box_id)
        body = self._body(request)
        if "exposure" in body and body["exposure"] not in EXPOSURES:
            raise ApiError(422, "Illegal value for parameter exposure.")
        sensors = self._updated_sensors(box, body.get("sensors") or [])
        for key in ("name", "exposure", "grouptag", "description", "weblink"):
            if key in body:
                box[key] = body[key] if body[key] != "" else None
        if body.get("location") is not None:
            self._move(box, parse_location(body["location"]), None)
        box["sensors"] = sensors
        box["updatedAt"] = osem_time(dt.datetime.now(dt.UTC))
        return 200, {"code": "Ok", "data": self._box_json(box, secrets=True)}

    def _delete_box(self, request: Request, box_id: str) -> tuple[int, JsonDict]:
        """Delete a box; the API wants the password again."""
        self._own_box(request, box_id)
        if self._body(request).get("password") != self.password:
            raise ApiError(403, "Password incorrect")
        del self.boxes[box_id]
        message = "box and all associated measurements marked for deletion"
        return 200, {"code": "Ok", "message": message}

    def _updated_sensors(self, box: JsonDict, changes: list[Any]) -> list[JsonDict]:
        """Apply a PUT's sensor list the way the API's ``updateSensors`` does."""
        sensors = [dict(s) for s in box["sensors"]]
        by_id = {s["_id"]: s for s in sensors}
        for change in changes:
            if not isinstance(change, dict):
                raise ApiError(422, "Parameter sensors is not parseable")
            known = by_id.get(change.get("_id"))
            if known is not None and change.get("deleted"):
                sensors.remove(known)
            elif change.get("edited") and change.get("new") and known is None:
                sensors.append(self._new_sensor(change))
            elif known is not None and change.get("edited"):
                known.update(self._new_sensor(change, known["_id"]))
                known.pop("lastMeasurement", None)
            elif known is None:
                raise ApiError(404, f"Sensor with id {change.get('_id')} not found.")
        if not sensors:
            raise ApiError(
                422, "Unable to delete sensor(s). A box needs at least one sensor."
            )
        return sensors

    @staticmethod
    def _new_sensor(spec: Any, sensor_id: str | None = None) -> JsonDict:
        """A sensor from a request; title, unit and sensorType are required."""
        if not isinstance(spec, dict):
            raise ApiError(422, "Validation failed: sensor must be an object")
        missing = [k for k in ("title", "unit", "sensorType") if not spec.get(k)]
        if missing:
            raise ApiError(422, f"Validation failed: {', '.join(missing)} required")
        sensor = {k: str(spec[k]) for k in ("title", "unit", "sensorType")}
        sensor["_id"] = sensor_id or new_id()
        if spec.get("icon"):
            sensor["icon"] = str(spec["icon"])
        return sensor

    def _box_json(self, box: JsonDict, secrets: bool) -> JsonDict:
        """A box as the API shows it, with ``access_token`` only to its owner."""
        shown = {k: v for k, v in box.items() if k not in ("access_token", "useAuth")}
        shown["sensors"] = [dict(s) for s in box["sensors"]]
        shown["loc"] = [{"geometry": box["currentLocation"], "type": "Feature"}]
        if box.get("lastMeasurementAt"):
            shown["lastMeasurementAt"] = box["lastMeasurementAt"]
        if secrets:
            shown["access_token"] = box["access_token"]
            shown["useAuth"] = box["useAuth"]
            shown["integrations"] = {"mqtt": {"enabled": False}}
        return shown

    # ----------------------------------------------------------- measurements

    def _data(self, request: Request, box_id: str) -> tuple[int, Any]:
        """Store CSV measurements ``sensorId,value[,createdAt[,lng,lat[,height]]]``."""
        box = self._box(box_id)
        if request.mimetype != "text/csv":
            raise ApiError(415, "Unsupported content-type.")
        self._check_access_token(request, box)
        lines = request.get_data(as_text=True).splitlines()
        rows = [self._csv_row(box, line) for line in lines if line.strip()]
        if len(rows) > MAX_MEASUREMENTS:
            raise ApiError(422, f"At most {MAX_MEASUREMENTS} measurements per request")
        for row in rows:
            self._store(box, *row)
        return 201, "Measurements saved in box"

    def _one_measurement(
        self, request: Request, box_id: str, sensor_id: str
    ) -> tuple[int, Any]:
        """Store one JSON measurement ``{value, createdAt?, location?}``."""
        box = self._box(box_id)
        self._check_access_token(request, box)
        body = self._body(request)
        self._sensor(box, sensor_id)
        value = self._value(body.get("value"))
        moment = self._time(body.get("createdAt"))
        coords = None
        if body.get("location") is not None:
            coords = parse_location(body["location"])
        self._store(box, sensor_id, value, moment, coords)
        return 201, "Measurement saved in box"

    def _check_access_token(self, request: Request, box: JsonDict) -> None:
        """Refuse measurements without the box's token (401, as the API does)."""
        if box["name"] in self.refuse_box_names:
            raise ApiError(422, f"stand-in refuses measurements for {box['name']!r}")
        given = request.headers.get("Authorization")
        if box["useAuth"] and given != box["access_token"]:
            raise ApiError(401, "Box access token not valid!")

    def _csv_row(self, box: JsonDict, line: str) -> tuple:
        """Validate one CSV line into (sensor id, value, time, coordinates)."""
        fields = [f.strip() for f in line.split(",")]
        if len(fields) not in (2, 3, 5, 6):
            raise ApiError(422, f"Invalid CSV line {line!r}")
        sensor_id = fields[0]
        self._sensor(box, sensor_id)
        value = self._value(fields[1])
        moment = self._time(fields[2] if len(fields) > 2 else None)
        coords = None
        if len(fields) >= 5:
            coords = parse_location([float(f) for f in fields[3:]])
        return sensor_id, value, moment, coords

    @staticmethod
    def _sensor(box: JsonDict, sensor_id: str) -> JsonDict:
        """A sensor of the box, or a 422 like the API's."""
        for sensor in box["sensors"]:
            if sensor["_id"] == sensor_id:
                return sensor
        raise ApiError(
            422, f"Measurement for sensor with id {sensor_id} does not belong to box"
        )

    @staticmethod
    def _value(raw: Any) -> float:
        """A finite number, or a 422."""
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ApiError(422, f"Measurement value {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ApiError(422, f"Measurement value {raw!r} is not finite")
        return value

    @staticmethod
    def _time(raw: Any) -> dt.datetime:
        """The measurement time (now if not given), or a 422."""
        if raw in (None, ""):
            return dt.datetime.now(dt.UTC)
        try:
            return parse_time(str(raw))
        except ValueError:
            raise ApiError(422, f"Invalid RFC 3339 time {raw!r}") from None

    def _store(
        self,
        box: JsonDict,
        sensor_id: str,
        value: float,
        moment: dt.datetime,
        coords: list[float] | None,
    ) -> None:
        """Record a measurement and update lastMeasurement and the location."""
        created = osem_time(moment)
        location = None
        if coords is not None:
            location = {"lng": coords[0], "lat": coords[1]}
            if len(coords) > 2:
                location["height"] = coords[2]
            self._move(box, coords, moment)
        self.measurements.append(
            {
                "box_id": box["_id"],
                "box_name": box["name"],
                "sensor_id": sensor_id,
                "value": value,
                "createdAt": created,
                "location": location,
            }
        )
        sensor = self._sensor(box, sensor_id)
        last = sensor.get("lastMeasurement")
        if last is None or parse_time(last["createdAt"]) <= moment:
            sensor["lastMeasurement"] = {"value": repr(value), "createdAt": created}
        if not box.get("lastMeasurementAt") or box["lastMeasurementAt"] < created:
            box["lastMeasurementAt"] = created

    @staticmethod
    def _move(box: JsonDict, coords: list[float], moment: dt.datetime | None) -> None:
        """Make ``coords`` the current location unless a newer one is known."""
        moment = moment or dt.datetime.now(dt.UTC)
        current = box["currentLocation"]
        if parse_time(current["timestamp"]) <= moment:
            box["currentLocation"] = {
                "type": "Point",
                "coordinates": coords,
                "timestamp": osem_time(moment),
            }


@pytest.fixture
def osem_standin() -> Iterator[OsemStandin]:
    """A started :class:`OsemStandin`, stopped after the test."""
    standin = OsemStandin()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()

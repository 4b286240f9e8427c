"""Forwarding of stored data to the OpenSenseMap (OSEM) through ``sensemapi``.

This is the only module that knows the OpenSenseMap and imports ``sensemapi``.
It turns legacy upload rows and OpenSmog readings into senseBoxes, sensors and
measurements, and every failure into one of three exceptions the caller acts on:

* :class:`OsemRetryable` - try again later (OSEM unreachable, 5xx, 429, sign-in);
* :class:`OsemRefused` - OSEM refuses this data for good (a 4xx to the data POST or
  to creating the box for it), with its reason; a 4xx to a call about the account
  or its boxes (the box list, adding sensors, texts) is no verdict on the data and
  is :class:`OsemRetryable`;
* :class:`OsemNoLocation` - a senseBox must be created but no position is known,
  so the data has to wait.

An :class:`OsemForwarder` is not thread-safe: use one per forwarding thread.

sensemapi 0.5.0 needs these workarounds, all in :class:`OsemAccount`:

* it posts measurements without the box access token that OSEM demands for boxes
  with ``useAuth`` (the default of new boxes), and ``get_own_boxes`` never sees
  those tokens: we read them from ``GET /users/me/boxes`` and send them ourselves;
* ``post_measurements`` refuses two measurements of one sensor in one call and
  needs a pandas DataFrame, while OSEM takes up to 2500 of any sensors;
* on HTTP 429 it sleeps for however long OSEM names and retries, inside our
  forwarding thread; on error bodies without JSON or without a message it crashes
  with a JSON or ``TypeError`` and loses the HTTP status;
* ``new_box`` asserts ``current_lat``/``current_lon`` are truthy, refusing 0.0;
* its debug log prints tokens and its ``repr`` the password;
* its destructor signs out over the network and lets some errors escape.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import math
import numbers
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from posixpath import join as urljoin
from typing import Any, NamedTuple

import requests
from sensemapi import errors as sensemapi_errors
from sensemapi.account import SenseMapAccount
from sensemapi.senseBox import senseBox
from sensemapi.sensor import senseBoxSensor

from co2logserver.readings import QUANTITIES

logger = logging.getLogger(__name__)

UTC = dt.UTC
PREFIX = "CO2LOGSERVER_"
DEFAULT_TIMEOUT = 30.0
#: OSEM takes at most this many measurements per ``POST /boxes/<id>/data``.
MAX_MEASUREMENTS_PER_POST = 2500
#: How many posted (sensor, time) pairs are remembered to skip re-posting them.
POSTED_MEMORY = 100_000
#: Stand-in for a coordinate of exactly 0, which sensemapi's ``new_box`` refuses.
NOT_ZERO = 1e-9

OPENSMOG_BOX_NAME = "{servername} OpenSmog {suid}"
OPENSMOG_EXPOSURE = "outdoor"
OPENSMOG_SENSOR_TYPE = "OpenSmog"

Location = tuple[float, float, float | None]


class OsemError(Exception):
    """Base of all forwarding failures; ``status`` is OSEM's HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """Keep the message for the caller's logs and the status for decisions."""
        super().__init__(message)
        self.message = message
        self.status = status


class OsemRetryable(OsemError):
    """OSEM is unreachable, overloaded, rate limiting or refusing our sign-in."""


class OsemRefused(OsemError):
    """OSEM refuses this data for good (a 4xx to the data POST or to creating its
    box); the message gives its reason."""


class OsemNoLocation(OsemError):
    """A new senseBox needs a position and none is known yet: keep the data waiting."""


class SensorSpec(NamedTuple):
    """What a sensor is called and shown as; title, type and unit identify it."""

    title: str
    type: str
    unit: str
    icon: str


#: OpenSenseMap icons of the registry's quantities; others get ``osem-cloud``.
OPENSMOG_ICONS = {
    "CO2": "osem-co2",
    "PM10": "osem-particulate-matter",
    "PM2_5": "osem-particulate-matter",
    "PM1": "osem-particulate-matter",
    "PM4": "osem-particulate-matter",
    "TEMP": "osem-thermometer",
    "HUM": "osem-humidity",
    "PRES": "osem-barometer",
    "NOISE_LAEQ": "osem-volume-up",
    "NOISE_LA_MIN": "osem-volume-up",
    "NOISE_LA_MAX": "osem-volume-up",
    "SIGNAL": "osem-signal",
}


class Measurement(NamedTuple):
    """One value for one sensor, as a line of OSEM's CSV upload format."""

    sensor_id: str
    value: float
    time: dt.datetime
    location: Location | None

    def key(self) -> tuple[str, str]:
        """Identity used to avoid posting the same value twice."""
        return self.sensor_id, osem_time(self.time)

    def csv_line(self) -> str:
        """``sensorId,value,createdAt[,lng,lat[,height]]`` as OSEM reads it."""
        fields = [self.sensor_id, repr(float(self.value)), osem_time(self.time)]
        if self.location is not None:
            lat, lon, height = self.location
            fields += [repr(lon), repr(lat)]
            if height is not None:
                fields.append(repr(height))
        return ",".join(fields)


# --------------------------------------------------------------------------------------
# The account
# --------------------------------------------------------------------------------------


class OsemAccount(SenseMapAccount):
    """A sensemapi account with the fixes co2logserver needs (see module docs)."""

    last_forbidden_reason: str | None = None

    @property
    def session(self) -> requests.Session:
        """sensemapi's HTTP session, with :meth:`_screen_response` hooked in."""
        session = SenseMapAccount.session.fget(self)
        hooks = session.hooks["response"]
        if self._screen_response not in hooks:
            hooks.append(self._screen_response)
        return session

    @session.setter
    def session(self, new: requests.Session) -> None:
        """Replace the session the way sensemapi does."""
        SenseMapAccount.session.fset(self, new)

    def _screen_response(self, response: requests.Response, *args, **kwargs):
        """Raise HTTP errors as OsemError before sensemapi mis-parses or sleeps.

        403 goes through: sensemapi refreshes tokens or signs in again on it.
        """
        status = response.status_code
        if status < 400:
            return response
        reason = response_reason(response)
        if status == 403:
            self.last_forbidden_reason = reason
            return response
        if status == 429 or status >= 500:
            raise OsemRetryable(f"OpenSenseMap answered {status}: {reason}", status)
        raise OsemRefused(f"OpenSenseMap answered {status}: {reason}", status)

    @classmethod
    def dataframe_to_csv_for_upload(
        cls, measurements: Iterable[Measurement], discard_incomplete: bool = False
    ) -> str:
        """Write measurements as OSEM's CSV; several per sensor are fine for OSEM."""
        return "".join(m.csv_line() + "\n" for m in measurements)

    @SenseMapAccount.refresh_and_retry_on_outdated_tokens
    def own_boxes(self) -> list[dict[str, Any]]:
        """All boxes of the account with their access tokens, page by page."""
        boxes: list[dict[str, Any]] = []
        seen: set[str] = set()
        for page in range(10_000):
            data = self._own_boxes_page(page)
            fresh = [b for b in data.get("boxes", []) if b.get("_id") not in seen]
            boxes += fresh
            seen.update(b.get("_id") for b in fresh)
            total = data.get("boxes_count")
            if not fresh or not isinstance(total, int) or len(boxes) >= total:
                break
        return boxes

    def _own_boxes_page(self, page: int) -> dict[str, Any]:
        """One page of ``GET /users/me/boxes`` (older APIs ignore ``page``)."""
        response = self.request(
            "get",
            urljoin(self.api, "users/me/boxes"),
            headers=self.authorization_header,
            params={"page": page},
        )
        answer = response.json()
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
            raise sensemapi_errors.OpenSenseMapAPIResponseError(
                "GET users/me/boxes did not answer a list of boxes"
            )
        return data

    @contextlib.contextmanager
    def box_authorization(self, access_token: str | None) -> Iterator[None]:
        """Send a box's access token with the requests made inside (measurements)."""
        if not access_token:
            yield
            return
        headers = self.session.headers
        headers["Authorization"] = access_token
        try:
            yield
        finally:
            headers.pop("Authorization", None)

    def __repr__(self) -> str:
        """Name the account without sensemapi's password and tokens."""
        login = self.email or self.username
        return f"{type(self).__name__}(login={login!r}, api={self.api!r})"

    def __del__(self) -> None:
        """Sign out quietly; OSEM may be unreachable while the process ends."""
        with contextlib.suppress(Exception):
            super().__del__()


def response_reason(response: requests.Response) -> str:
    """OSEM's error message from a response, whatever shape the body has."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    text = (response.text or "").strip()
    return text[:200] if text else str(response.reason or "no reason given")


def make_account(settings: Mapping[str, Any]) -> SenseMapAccount:
    """Build the OSEM account from the settings; no disk caches unless asked."""
    guard_sensemapi_logs(settings.get(PREFIX + "SENSEMAPI_LOGLEVEL"))
    timeout = float(settings.get(PREFIX + "OSEM_TIMEOUT") or DEFAULT_TIMEOUT)
    account = OsemAccount(
        email=settings.get(PREFIX + "OSEM_EMAIL") or None,
        username=settings.get(PREFIX + "OSEM_USERNAME") or None,
        password=settings.get(PREFIX + "OSEM_PASSWORD") or None,
        api=settings.get(PREFIX + "OSEM_API") or None,
        cache_password=bool(settings.get(PREFIX + "OSEM_CACHE_PASSWORD")),
        connection_timeout=timeout,
        response_timeout=timeout,
    )
    enable_auth_cache(account, settings)
    enable_request_cache(account, settings)
    return account


def cache_directory(setting: Any) -> str:
    """A cache setting's folder: a path as given, ``True`` the XDG cache folder."""
    if isinstance(setting, (str, os.PathLike)):
        return os.fspath(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "co2logserver")


def cache_name(settings: Mapping[str, Any], what: str) -> str:
    """A file name per server, so that two servers never share a cache."""
    server = re.sub(r"\W+", "-", str(settings.get(PREFIX + "NAME") or "co2logserver"))
    return f"{server.strip('-').lower() or 'co2logserver'}-osem-{what}"


def enable_auth_cache(account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
    """Keep the sign-in on disk if ``CO2LOGSERVER_OSEM_AUTH_CACHE`` asks for it."""
    setting = settings.get(PREFIX + "OSEM_AUTH_CACHE")
    if not setting:
        return
    from sensemapi.cache import SQLiteAuthentiCache

    try:
        account.auth_cache = SQLiteAuthentiCache(
            directory=cache_directory(setting), name=cache_name(settings, "auth")
        )
    except (OSError, sqlite3.Error) as error:
        account.auth_cache = None
        logger.warning("OpenSenseMap sign-in is not cached on disk: %s", error)


def enable_request_cache(account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
    """Cache GET requests on disk if asked and CacheControl is installed."""
    setting = settings.get(PREFIX + "OSEM_REQUEST_CACHE")
    if not setting:
        return
    try:
        from cachecontrol.caches.file_cache import FileCache
    except ImportError:
        logger.warning(
            "CO2LOGSERVER_OSEM_REQUEST_CACHE is on but the package "
            "'CacheControl[filecache]' is not installed: requests are not cached"
        )
        return
    folder = os.path.join(cache_directory(setting), cache_name(settings, "requests"))
    account.request_cache = FileCache(folder)


# --------------------------------------------------------------------------------------
# Keeping secrets out of logs
# --------------------------------------------------------------------------------------

_SECRET_VALUE = re.compile(
    r"""(?P<key>["']?(?:token|refreshToken|refresh_token|access_token|password"""
    r"""|Authorization)["']?\s*[:=]\s*)(?P<quote>["'])(?:(?!(?P=quote)).)*(?P=quote)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer\s+)[\w.~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace token, password and Authorization values in ``text`` by ``***``."""
    text = _SECRET_VALUE.sub(r"\g<key>\g<quote>***\g<quote>", text)
    return _BEARER.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Log filter that redacts secrets sensemapi prints in its debug output."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it holds a secret; never drop it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def guard_sensemapi_logs(level: int | str | None) -> None:
    """Set sensemapi's log level and redact secrets from every sensemapi logger."""
    base = logging.getLogger("sensemapi")
    if level is not None:
        base.setLevel(level.upper() if isinstance(level, str) else level)
    names = [n for n in logging.root.manager.loggerDict if n.startswith("sensemapi.")]
    for name in ["sensemapi", *names]:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in target.filters):
            target.addFilter(RedactSecrets())


# --------------------------------------------------------------------------------------
# Turning data into plans: what goes to which box (no network)
# --------------------------------------------------------------------------------------


@dataclass
class Reading:
    """A value for the sensor ``spec``, measured at ``time`` (and ``location``)."""

    spec: SensorSpec
    value: float
    time: dt.datetime
    location: Location | None


@dataclass
class BoxPlan:
    """Everything to forward to one senseBox, and how to create it if missing."""

    name: str
    exposure: str
    home: Location | None
    grouptag: str
    description: str
    weblink: str
    readings: list[Reading] = field(default_factory=list)

    def specs(self) -> list[SensorSpec]:
        """The sensors the readings need, each once, in order of appearance."""
        return list(dict.fromkeys(r.spec for r in self.readings))


def osem_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the time format OSEM stores."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def as_number(raw: Any) -> float | None:
    """A finite float from a number or numeric text, else None (bools are not)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, numbers.Real):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def as_time(raw: Any) -> dt.datetime | None:
    """A UTC time from a datetime, ISO text or UNIX seconds; naive counts as UTC."""
    if isinstance(raw, dt.datetime):
        moment = raw
    elif isinstance(raw, str) and raw.strip():
        try:
            moment = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            seconds = as_number(raw)
            return None if seconds is None else as_time(seconds)
    elif as_number(raw) is not None:
        try:
            return dt.datetime.fromtimestamp(float(raw), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_location(lat: Any, lon: Any, height: Any = None) -> Location | None:
    """A valid (lat, lon, height) or None; height is optional."""
    lat, lon = as_number(lat), as_number(lon)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon, as_number(height)


def setting(settings: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value of ``CO2LOGSERVER_<key>``, or ``default`` if unset."""
    value = settings.get(PREFIX + key)
    return default if value is None else value


def server_name(settings: Mapping[str, Any]) -> str:
    """The server's name, used in box names, grouptag and description."""
    return str(setting(settings, "NAME", "co2logserver"))


def box_texts(settings: Mapping[str, Any]) -> dict[str, str]:
    """Grouptag, description and weblink that every created box gets."""
    name = server_name(settings)
    description = str(setting(settings, "OSEM_DEFAULT_DESCRIPTION", ""))
    return {
        "grouptag": name,
        "description": description.format(servername=name),
        "weblink": str(setting(settings, "OSEM_DEFAULT_WEBLINK", "")),
    }


def special_columns(settings: Mapping[str, Any]) -> set[str]:
    """Columns that carry box, place, time or checksums rather than measurements."""
    keys = (
        "OSEM_BOX_COL",
        "OSEM_LAT_COL",
        "OSEM_LON_COL",
        "OSEM_HEIGHT_COL",
        "OSEM_TIME_COL",
        "UPLOAD_TIME_COL",
        "MATCHED_CHECKSUMS_COL",
        "FAILED_CHECKSUMS_COL",
    )
    columns = {str(setting(settings, key, "")).lower() for key in keys}
    columns.update(str(c).lower() for c in setting(settings, "TIME_COLS", []))
    return columns - {""}


def column_spec(column: str, settings: Mapping[str, Any]) -> SensorSpec | None:
    """The sensor a column feeds, if the column is to be forwarded at all."""
    if not setting(settings, "OSEM_COL_REDIRECT", lambda col: True)(column):
        return None
    regex = setting(settings, "OSEM_COL_REGEX")
    match = re.search(regex, column) if regex is not None else None
    if match is None:
        return None
    groups = match.groupdict()
    details = {**groups, "column": column}
    convert_unit = setting(settings, "OSEM_UNIT_COVERTER", lambda unit: unit)
    make_title = setting(settings, "OSEM_SENSOR_TITLE_GENERATOR", "{quantity}".format)
    pick_icon = setting(
        settings, "OSEM_ICON_DETERMINER", lambda d: "osem-not-available"
    )
    return SensorSpec(
        title=str(make_title(**details)),
        type=str(groups["type"]),
        unit=str(convert_unit(groups["unit"])),
        icon=str(pick_icon(details)),
    )


def filtered_value(
    settings: Mapping[str, Any], box: str, column: str, value: float
) -> float | None:
    """The value after ``CO2LOGSERVER_OSEM_VALUE_FILTER``; None drops it."""
    value_filter = setting(settings, "OSEM_VALUE_FILTER")
    if value_filter is None:
        return value
    try:
        result = value_filter(box, column, value)
    except Exception as error:  # a faulty hook must not lose data: keep the value
        logger.warning(
            "CO2LOGSERVER_OSEM_VALUE_FILTER failed for box %r column %r: %s",
            box,
            column,
            error,
        )
        return value
    return as_number(result)


def row_time(row: Mapping[str, Any], settings: Mapping[str, Any]) -> dt.datetime:
    """When a row was measured: its time column, else its upload time, else now."""
    for key in ("OSEM_TIME_COL", "UPLOAD_TIME_COL"):
        column = setting(settings, key)
        moment = as_time(row.get(str(column).lower())) if column else None
        if moment is not None:
            return moment
    return dt.datetime.now(UTC)


def row_location(
    row: Mapping[str, Any], settings: Mapping[str, Any]
) -> Location | None:
    """Where a row was measured, from its lat/lon/height columns."""

    def value(key: str, default: str) -> Any:
        return row.get(str(setting(settings, key, default)).lower())

    return as_location(
        value("OSEM_LAT_COL", "lat"),
        value("OSEM_LON_COL", "lon"),
        value("OSEM_HEIGHT_COL", "height"),
    )


def default_location(box: str, settings: Mapping[str, Any]) -> Location | None:
    """The configured position of a box whose rows carry none."""
    lat_hook = setting(settings, "DEFAULT_LAT", lambda box: None)
    lon_hook = setting(settings, "DEFAULT_LON", lambda box: None)
    return as_location(lat_hook(box), lon_hook(box))


def box_of_row(row: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The value of the box column, or the configured default box."""
    column = str(setting(settings, "OSEM_BOX_COL", "box")).lower()
    value = row.get(column)
    if value is None or str(value) == "":
        return str(setting(settings, "OSEM_BOX_COL_DEFAULT", "generic"))
    return str(value)


def row_readings(
    box: str, row: Mapping[str, Any], settings: Mapping[str, Any], skip: set[str]
) -> list[Reading]:
    """The forwardable values of one row, each tied to its sensor."""
    moment, location = row_time(row, settings), row_location(row, settings)
    readings = []
    for column, raw in row.items():
        if column.lower() in skip:
            continue
        value = as_number(raw)
        spec = column_spec(column, settings) if value is not None else None
        if spec is None:
            continue
        value = filtered_value(settings, box, column, value)
        if value is not None:
            readings.append(Reading(spec, value, moment, location))
    return readings


def legacy_plan(
    box: str, rows: list[Mapping[str, Any]], settings: Mapping[str, Any]
) -> BoxPlan:
    """What the rows of one box forward, and where the box would be created."""
    skip = special_columns(settings)
    readings = [r for row in rows for r in row_readings(box, row, settings, skip)]
    located = (row_location(row, settings) for row in rows)
    home = next((loc for loc in located if loc is not None), None)
    name_box = setting(
        settings, "OSEM_BOX_NAME_GENERATOR", "{servername} senseBox {box}".format
    )
    exposure = setting(settings, "OSEM_EXPOSURE_DETERMINER", lambda box: "mobile")
    return BoxPlan(
        name=str(name_box(servername=server_name(settings), box=box)),
        exposure=str(exposure(box)),
        home=home or default_location(box, settings),
        readings=readings,
        **box_texts(settings),
    )


def legacy_plans(
    rows: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]
) -> list[BoxPlan]:
    """Group rows by box, dropping boxes not to be forwarded and empty ones."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(box_of_row(row, settings), []).append(row)
    redirect = setting(settings, "OSEM_BOX_REDIRECT", lambda box: True)
    plans = []
    for box, box_rows in groups.items():
        if not redirect(box):
            logger.debug(
                "box %r is not forwarded (CO2LOGSERVER_OSEM_BOX_REDIRECT)", box
            )
            continue
        plan = legacy_plan(box, box_rows, settings)
        if plan.readings:
            plans.append(plan)
    return plans


def reading_spec(kind: str) -> SensorSpec | None:
    """The sensor of an OpenSmog reading type (``PM2.5`` and ``pm2_5`` alike)."""
    quantity = QUANTITIES.get(str(kind).upper().replace(".", "_"))
    if quantity is None:
        return None
    icon = OPENSMOG_ICONS.get(quantity.name, "osem-cloud")
    return SensorSpec(quantity.title, OPENSMOG_SENSOR_TYPE, quantity.unit, icon)


def readings_plan(
    suid: str,
    location: Location,
    observations: Iterable[tuple[int, Mapping[str, Any]]],
    settings: Mapping[str, Any],
) -> BoxPlan:
    """What a sensor's OpenSmog observations forward, to the box of its SUID."""
    readings = []
    for stamp, values in observations:
        moment = as_time(stamp) or dt.datetime.now(UTC)
        for kind, raw in values.items():
            spec, value = reading_spec(kind), as_number(raw)
            if spec is None or value is None:
                logger.debug("OpenSmog %s: %s=%r is not forwarded", suid, kind, raw)
                continue
            readings.append(Reading(spec, value, moment, location))
    name = OPENSMOG_BOX_NAME.format(servername=server_name(settings), suid=suid)
    return BoxPlan(
        name=name,
        exposure=OPENSMOG_EXPOSURE,
        home=location,
        readings=readings,
        **box_texts(settings),
    )


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------

_SIGN_IN_ERRORS = (
    sensemapi_errors.NoCredentialsError,
    sensemapi_errors.OpenSenseMapAPIOutdatedTokenError,
    sensemapi_errors.OpenSenseMapAPIInvalidCredentialsError,
)


@contextlib.contextmanager
def osem_errors(account: OsemAccount) -> Iterator[None]:
    """Raise every sensemapi or requests failure as OsemRetryable or OsemRefused."""
    try:
        yield
    except OsemError:
        raise
    except requests.RequestException as error:
        raise OsemRetryable(f"OpenSenseMap not reachable: {error}") from error
    except _SIGN_IN_ERRORS as error:
        message = (
            f"OpenSenseMap sign-in failed ({error}); check CO2LOGSERVER_OSEM_EMAIL "
            "or CO2LOGSERVER_OSEM_USERNAME and CO2LOGSERVER_OSEM_PASSWORD"
        )
        raise OsemRetryable(message) from error
    except sensemapi_errors.OpenSenseMapAPITooManyRequestsError as error:
        raise OsemRetryable(f"OpenSenseMap rate limit: {error}", 429) from error
    except sensemapi_errors.OpenSenseMapAPIAuthenticationError as error:
        reason = account.last_forbidden_reason or str(error)
        raise OsemRefused(f"OpenSenseMap answered 403: {reason}", 403) from error
    except sensemapi_errors.SenseMapiError as error:
        raise OsemRetryable(f"unexpected OpenSenseMap answer: {error}") from error


def most_urgent(failures: list[OsemError]) -> OsemError:
    """The failure the caller must act on first: waiting beats dropping the data."""
    waiting = [f for f in failures if isinstance(f, OsemNoLocation)]
    return (waiting or failures)[0]


# --------------------------------------------------------------------------------------
# The forwarder
# --------------------------------------------------------------------------------------


@dataclass
class KnownBox:
    """A senseBox of the account, its access token and last accepted position."""

    box: senseBox
    access_token: str | None
    location: Location | None


def known_box(data: dict[str, Any]) -> KnownBox:
    """A KnownBox from OSEM's box JSON (with secrets)."""
    box = senseBox.from_api_json(data)
    location = as_location(box.current_lat, box.current_lon, box.current_height)
    return KnownBox(box, data.get("access_token"), location)


def find_sensor(box: senseBox, spec: SensorSpec) -> senseBoxSensor | None:
    """The box's sensor with the spec's title, type and unit (icons may differ)."""
    for sensor in box.sensors:
        if (sensor.title, sensor.type, sensor.unit) == spec[:3]:
            return sensor
    return None


def not_zero(coordinate: float) -> float:
    """sensemapi's ``new_box`` asserts coordinates are truthy: nudge exact zeros."""
    return coordinate or NOT_ZERO


def chunks(items: list[Measurement], size: int) -> Iterator[list[Measurement]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class OsemForwarder:
    """Forwards legacy rows and OpenSmog readings to the account's senseBoxes."""

    def __init__(self, account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
        """Use an account from :func:`make_account` and the app's settings."""
        if not isinstance(account, OsemAccount):
            raise TypeError("OsemForwarder needs an account made by make_account()")
        self.account = account
        self.settings = settings
        self._boxes: dict[str, KnownBox] | None = None
        self._fresh = False
        self._last_posted: dict[str, dt.datetime] = {}
        self._posted: collections.OrderedDict[tuple[str, str], None] = (
            collections.OrderedDict()
        )

    # ---------------------------------------------------------------- public

    def forward_legacy(self, rows: list[dict[str, Any]]) -> None:
        """Forward stored legacy rows: one box per box-column value.

        :raise OsemRetryable: at once, as OSEM fails for every box then.
        :raise OsemNoLocation, OsemRefused: after trying every box (waiting wins
            over refused); the other boxes' data has been posted.
        """
        self._forward(legacy_plans(rows, self.settings))

    def forward_readings(
        self,
        suid: str,
        location: tuple[float, float, float | None] | None,
        observations: list[tuple[int, dict[str, float]]],
    ) -> None:
        """Forward a sensor's OpenSmog observations to the box of its SUID.

        :raise OsemNoLocation: if ``location`` is None (the data has to wait).
        :raise OsemRetryable, OsemRefused: as for :meth:`forward_legacy`.
        """
        place = None if location is None else as_location(*location)
        if place is None:
            raise OsemNoLocation(f"no valid location known for OpenSmog sensor {suid}")
        self._forward([readings_plan(suid, place, observations, self.settings)])

    def forget_boxes(self) -> None:
        """Drop the cached box list; the next forward reads it again."""
        self._boxes = None

    @contextlib.contextmanager
    def account_call(self, what: str) -> Iterator[None]:
        """A call about the account or its boxes, not about the data: a refusal
        (4xx) is retried with the backoff instead of parking the data for good.

        A 4xx on ``GET /users/me/boxes`` used to park every item of the batch
        (#12). A 401 forgets the sign-in, so the next attempt signs in again.
        """
        try:
            with osem_errors(self.account):
                yield
        except OsemRefused as error:
            if error.status == 401:
                self.account.token = None
            raise OsemRetryable(f"{what}: {error.message}", error.status) from error

    # ------------------------------------------------------------ per batch

    def _forward(self, plans: list[BoxPlan]) -> None:
        """Forward each plan; stop at an outage, else raise the worst failure last."""
        self._fresh = False
        failures: list[OsemError] = []
        for plan in plans:
            if not plan.readings:
                continue
            try:
                self._forward_box(plan)
            except OsemRetryable:
                raise
            except OsemError as error:
                logger.warning("OpenSenseMap box %r: %s", plan.name, error.message)
                failures.append(error)
        if failures:
            raise most_urgent(failures)

    def _forward_box(self, plan: BoxPlan) -> None:
        """Forward one box, once more after a refusal (our box list may be stale)."""
        try:
            with osem_errors(self.account):
                self._forward_box_once(plan)
            return
        except OsemRefused as error:
            logger.info("box %r refused (%s); reloading boxes", plan.name, error)
            if error.status == 401:
                self.account.token = None
            self.forget_boxes()
        try:
            with osem_errors(self.account):
                self._forward_box_once(plan)
        except OsemRefused as error:
            if error.status in (401, 404):  # our login or OSEM's box list is off
                raise OsemRetryable(error.message, error.status) from error
            raise

    def _forward_box_once(self, plan: BoxPlan) -> None:
        """Make sure the box and its sensors exist, then post its measurements."""
        known = self._find_box(plan.name)
        if known is None:
            known = self._create_box(plan)
        else:
            self._add_missing_sensors(known, plan)
        measurements, location = self._select(known, plan.readings)
        self._post(known, measurements)
        known.location = location

    # ----------------------------------------------------------------- boxes

    def _known_boxes(self, reload: bool = False) -> dict[str, KnownBox]:
        """The account's boxes by name, read once and again only when needed."""
        if self._boxes is None or reload:
            boxes: dict[str, KnownBox] = {}
            with self.account_call("listing the account's boxes"):
                own = self.account.own_boxes()
            for data in own:
                known = known_box(data)
                boxes.setdefault(known.box.name, known)
            self._boxes = boxes
            self._fresh = True
            logger.debug("OpenSenseMap account has %d boxes", len(boxes))
        return self._boxes

    def _find_box(self, name: str) -> KnownBox | None:
        """The box named ``name``; an unknown name reloads the list once per batch."""
        boxes = self._known_boxes()
        if name not in boxes and not self._fresh:
            boxes = self._known_boxes(reload=True)
        return boxes.get(name)

    def _create_box(self, plan: BoxPlan) -> KnownBox:
        """Create the box with all sensors the plan needs, then set its texts."""
        if plan.home is None:
            raise OsemNoLocation(
                f"senseBox {plan.name!r} does not exist and no position is known: "
                "send lat/lon columns or set CO2LOGSERVER_DEFAULT_LAT/_LON"
            )
        lat, lon, height = plan.home
        box = senseBox(
            name=plan.name,
            exposure=plan.exposure,
            grouptag=plan.grouptag or None,
            current_lat=not_zero(lat),
            current_lon=not_zero(lon),
            current_height=height,
        )
        for spec in plan.specs():
            box.new_sensor(
                title=spec.title, type=spec.type, unit=spec.unit, icon=spec.icon
            )
        created = self.account.new_box(box)
        logger.info("created OpenSenseMap box %r (%s)", plan.name, created.id)
        self._set_texts(created.id, plan)
        known = self._known_boxes(reload=True).get(plan.name)
        if known is None:
            raise OsemRetryable(f"created box {plan.name!r} is not listed yet")
        return known

    def _set_texts(self, box_id: str, plan: BoxPlan) -> None:
        """Set description and weblink, which OSEM ignores when creating a box."""
        if not (plan.description or plan.weblink):
            return
        patch = senseBox(
            id=box_id,
            description=plan.description or None,
            weblink=plan.weblink or None,
        )
        with self.account_call(f"setting the texts of box {plan.name!r}"):
            self.account.update_box_metadata(patch)

    def _add_missing_sensors(self, known: KnownBox, plan: BoxPlan) -> None:
        """Add the sensors the box lacks in one update, sending no other sensor."""
        missing = [s for s in plan.specs() if find_sensor(known.box, s) is None]
        if not missing:
            return
        patch = senseBox(id=known.box.id)
        for spec in missing:
            patch.new_sensor(
                title=spec.title, type=spec.type, unit=spec.unit, icon=spec.icon
            )
        with self.account_call(f"adding sensors to box {known.box.name!r}"):
            self.account.update_box_metadata(patch)
        known.box = patch  # sensemapi filled it with the box as OSEM answered
        logger.info(
            "added sensors %s to OpenSenseMap box %r",
            ", ".join(s.title for s in missing),
            known.box.name,
        )

    # ---------------------------------------------------------- measurements

    def _select(
        self, known: KnownBox, readings: list[Reading]
    ) -> tuple[list[Measurement], Location | None]:
        """The measurements to post, in time order, and the box's new position."""
        min_gap = float(setting(self.settings, "OSEM_MIN_SECONDS_BETWEEN_UPLOADS", 0))
        max_move = float(
            setting(self.settings, "OSEM_MAX_POSITION_CHANGE", float("inf"))
        )
        previous: dict[str, dt.datetime] = {}
        place = known.location
        selected = []
        for reading in sorted(readings, key=lambda r: r.time):
            sensor = find_sensor(known.box, reading.spec)
            if sensor is None:
                raise OsemRetryable(f"sensor {reading.spec.title!r} missing on OSEM")
            if self._skip(sensor, reading.time, previous, min_gap):
                continue
            location = self._plausible(
                known.box.name, place, reading.location, max_move
            )
            place = location or place
            selected.append(
                Measurement(sensor.id, reading.value, reading.time, location)
            )
            previous[sensor.id] = reading.time
        return selected, place

    def _skip(
        self,
        sensor: senseBoxSensor,
        moment: dt.datetime,
        previous: dict[str, dt.datetime],
        min_gap: float,
    ) -> bool:
        """Whether a value was posted already or follows the last too closely."""
        if (sensor.id, osem_time(moment)) in self._posted:
            return True
        if min_gap <= 0:
            return False
        known = [previous.get(sensor.id), self._last_posted.get(sensor.id)]
        known.append(sensor.last_time)
        last = max((t for t in known if t is not None), default=None)
        return last is not None and (moment - last).total_seconds() < min_gap

    @staticmethod
    def _plausible(
        name: str, place: Location | None, location: Location | None, max_move: float
    ) -> Location | None:
        """The location, unless it jumps more degrees than allowed from ``place``."""
        if location is None or place is None:
            return location
        jump = max(abs(location[0] - place[0]), abs(location[1] - place[1]))
        if jump <= max_move:
            return location
        logger.warning(
            "box %r: position jumps %.5f°, more than CO2LOGSERVER_OSEM_MAX_POSITION_"
            "CHANGE; value forwarded without it",
            name,
            jump,
        )
        return None

    def _post(self, known: KnownBox, measurements: list[Measurement]) -> None:
        """Post a box's measurements in one call (per 2500) with its access token."""
        for part in chunks(measurements, MAX_MEASUREMENTS_PER_POST):
            with self.account.box_authorization(known.access_token):
                self.account.post_measurements(known.box.id, part)
            self._remember(part)
            logger.debug("posted %d measurements to box %r", len(part), known.box.name)

    def _remember(self, measurements: list[Measurement]) -> None:
        """Note what was posted, to skip it when a batch is forwarded again."""
        for measurement in measurements:
            self._posted[measurement.key()] = None
            last = self._last_posted.get(measurement.sensor_id)
            if last is None or measurement.time > last:
                self._last_posted[measurement.sensor_id] = measurement.time
        while len(self._posted) > POSTED_MEMORY:
            self._posted.popitem(last=False)


__all__ = [
    "OsemAccount",
    "OsemError",
    "OsemForwarder",
    "OsemNoLocation",
    "OsemRefused",
    "OsemRetryable",
    "make_account",
]

"""What goes to which senseBox, decided without the network.

A :class:`BoxPlan` is everything one senseBox gets from one outbox group: its name,
how to create it if it is missing (exposure, position, texts) and its readings,
each tied to the sensor it feeds. The worker builds one plan per group and hands it
to :meth:`co2logserver.forwarding.client.OsemClient.forward`; nothing here knows
sensemapi or HTTP, so the 0.1.2 column conventions can be tested on their own.

Two rules live here and nowhere else in forwarding:

* where a box is: a legacy box where its rows say (else the ``DEFAULT_LAT``/
  ``DEFAULT_LON`` hooks); an OpenSmog sensor's box at its *public* location
  (:func:`co2logserver.readings.public_location`) unless its owner hid it, else
  the same hooks;
* which settings apply: each is read from the app's config as it is, with no
  fallback value here. Defaults belong to :mod:`co2logserver.config_default`
  alone; ``None`` where the config allows it means "off".
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from co2logserver.readings import QUANTITIES, public_location
from co2logserver.store import outbox

logger = logging.getLogger(__name__)

UTC = dt.UTC
PREFIX = "CO2LOGSERVER_"

OPENSMOG_BOX_NAME = "{servername} OpenSmog {suid}"
OPENSMOG_EXPOSURE = "outdoor"
OPENSMOG_SENSOR_TYPE = "OpenSmog"

#: Latitude, longitude and height in metres (or None).
Location = tuple[float, float, float | None]

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


class SensorSpec(NamedTuple):
    """What a sensor is called and shown as; title, type and unit identify it."""

    title: str
    type: str
    unit: str
    icon: str


@dataclass
class Reading:
    """A value for the sensor ``spec``, measured at ``time`` (and ``location``)."""

    spec: SensorSpec
    value: float
    time: dt.datetime
    location: Location | None


@dataclass
class BoxPlan:
    """Everything to forward to one senseBox, and how to create it if missing.

    ``home_required``: the data waits without a ``home`` even if the box exists
    (an OpenSmog sensor's readings carry no position of their own).
    """

    name: str
    exposure: str
    home: Location | None
    grouptag: str
    description: str
    weblink: str
    readings: list[Reading] = field(default_factory=list)
    home_required: bool = False

    def specs(self) -> list[SensorSpec]:
        """The sensors the readings need, each once, in order of appearance."""
        return list(dict.fromkeys(r.spec for r in self.readings))


def setting(settings: Mapping[str, Any], key: str) -> Any:
    """The value of ``CO2LOGSERVER_<key>``; a missing key is a bug, not a default."""
    return settings[PREFIX + key]


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


# ---------------------------------------------------------- where a box is


def default_location(box: str, settings: Mapping[str, Any]) -> Location | None:
    """The configured position of a box (or SUID) whose data carries none."""
    return as_location(
        setting(settings, "DEFAULT_LAT")(box), setting(settings, "DEFAULT_LON")(box)
    )


def sensor_home(
    suid: str, sensor: Any, hidden: bool, settings: Mapping[str, Any]
) -> Location | None:
    """Where an OpenSmog sensor's box is shown: its public location, else the hooks.

    ``sensor`` is its stored row (or None); ``hidden`` means its owner hid the
    location (SPEC §12), which then never leaves the server.
    """
    if sensor is not None and not hidden:
        decimals = int(setting(settings, "PUBLIC_LOCATION_DECIMALS"))
        place = public_location(
            sensor.latitude, sensor.longitude, sensor.elevation, decimals
        )
        if place is not None:
            return as_location(*place)
    return default_location(suid, settings)


def row_location(
    row: Mapping[str, Any], settings: Mapping[str, Any]
) -> Location | None:
    """Where a legacy row was measured, from its lat/lon/height columns."""

    def value(key: str) -> Any:
        column = setting(settings, key)
        return row.get(str(column).lower()) if column else None

    return as_location(
        value("OSEM_LAT_COL"), value("OSEM_LON_COL"), value("OSEM_HEIGHT_COL")
    )


def server_name(settings: Mapping[str, Any]) -> str:
    """The server's name, used in box names, grouptag and description."""
    return str(setting(settings, "NAME"))


def box_plan(
    name: str,
    exposure: str,
    home: Location | None,
    readings: list[Reading],
    settings: Mapping[str, Any],
    home_required: bool = False,
) -> BoxPlan:
    """A plan with the grouptag, description and weblink every created box gets."""
    server = server_name(settings)
    description = str(setting(settings, "OSEM_DEFAULT_DESCRIPTION") or "")
    return BoxPlan(
        name=name,
        exposure=exposure,
        home=home,
        grouptag=server,
        description=description.format(servername=server),
        weblink=str(setting(settings, "OSEM_DEFAULT_WEBLINK") or ""),
        readings=readings,
        home_required=home_required,
    )


# ----------------------------------------------------- legacy rows (0.1.2)


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
    columns = {str(setting(settings, key) or "").lower() for key in keys}
    columns.update(str(c).lower() for c in setting(settings, "TIME_COLS") or ())
    return columns - {""}


def column_spec(column: str, settings: Mapping[str, Any]) -> SensorSpec | None:
    """The sensor a column feeds, if the column is to be forwarded at all."""
    if not setting(settings, "OSEM_COL_REDIRECT")(column):
        return None
    regex = setting(settings, "OSEM_COL_REGEX")
    match = re.search(regex, column) if regex is not None else None
    if match is None:
        return None
    groups = match.groupdict()
    details = {**groups, "column": column}
    convert_unit = setting(settings, "OSEM_UNIT_COVERTER")
    make_title = setting(settings, "OSEM_SENSOR_TITLE_GENERATOR")
    pick_icon = setting(settings, "OSEM_ICON_DETERMINER")
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


def row_readings(
    box: str, row: Mapping[str, Any], settings: Mapping[str, Any], skip: set[str]
) -> list[Reading]:
    """The forwardable values of one row, each tied to its sensor."""
    moment, location = row_time(row, settings), row_location(row, settings)
    readings = []
    for column, raw in row.items():
        if column.lower() in skip:
            continue
        number = as_number(raw)
        spec = column_spec(column, settings) if number is not None else None
        if spec is None or number is None:
            continue
        value = filtered_value(settings, box, column, number)
        if value is not None:
            readings.append(Reading(spec, value, moment, location))
    return readings


def legacy_plan(
    box: str, rows: list[Mapping[str, Any]], settings: Mapping[str, Any]
) -> BoxPlan | None:
    """What the rows of one box forward, or None if the box is not forwarded.

    ``box`` is the value :func:`co2logserver.store.outbox.legacy_items` keyed the
    rows by when they were stored: the one place a row's box is decided.
    """
    if not setting(settings, "OSEM_BOX_REDIRECT")(box):
        logger.debug("box %r is not forwarded (CO2LOGSERVER_OSEM_BOX_REDIRECT)", box)
        return None
    skip = special_columns(settings)
    readings = [r for row in rows for r in row_readings(box, row, settings, skip)]
    located = (row_location(row, settings) for row in rows)
    home = next((loc for loc in located if loc is not None), None)
    name_box = setting(settings, "OSEM_BOX_NAME_GENERATOR")
    exposure = setting(settings, "OSEM_EXPOSURE_DETERMINER")
    return box_plan(
        str(name_box(servername=server_name(settings), box=box)),
        str(exposure(box)),
        home or default_location(box, settings),
        readings,
        settings,
    )


def legacy_plans(
    rows: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]
) -> list[BoxPlan]:
    """One plan per box of the rows (grouped by the outbox's rule), in order."""
    items = outbox.legacy_items(
        rows,
        setting(settings, "OSEM_BOX_COL"),
        setting(settings, "OSEM_BOX_COL_DEFAULT"),
    )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for box, row in items:
        groups.setdefault(box, []).append(row)
    plans = (legacy_plan(box, box_rows, settings) for box, box_rows in groups.items())
    return [plan for plan in plans if plan is not None]


# ------------------------------------------------------ OpenSmog readings


def reading_spec(kind: str) -> SensorSpec | None:
    """The sensor of an OpenSmog reading type (``PM2.5`` and ``pm2_5`` alike).

    A quantity a protocol device taught this database (SPEC §9: lower-case name,
    unit unknown) is forwarded under its own name, with the unit "-".
    """
    quantity = QUANTITIES.get(str(kind).upper().replace(".", "_"))
    if quantity is None:
        name = str(kind)  # OpenSenseMap requires a unit: "-" says it is unknown
        return (
            SensorSpec(name, OPENSMOG_SENSOR_TYPE, "-", "osem-cloud") if name else None
        )
    icon = OPENSMOG_ICONS.get(quantity.name, "osem-cloud")
    return SensorSpec(quantity.title, OPENSMOG_SENSOR_TYPE, quantity.unit, icon)


def readings_plan(
    suid: str,
    home: Location | None,
    observations: Iterable[tuple[int, Mapping[str, Any]]],
    settings: Mapping[str, Any],
) -> BoxPlan:
    """What a sensor's OpenSmog observations forward, to the box of its SUID.

    ``home`` comes from :func:`sensor_home`; without one the plan waits.
    """
    readings = []
    for stamp, values in observations:
        moment = as_time(stamp) or dt.datetime.now(UTC)
        for kind, raw in values.items():
            spec, value = reading_spec(kind), as_number(raw)
            if spec is None or value is None:
                logger.debug("OpenSmog %s: %s=%r is not forwarded", suid, kind, raw)
                continue
            readings.append(Reading(spec, value, moment, home))
    name = OPENSMOG_BOX_NAME.format(servername=server_name(settings), suid=suid)
    return box_plan(name, OPENSMOG_EXPOSURE, home, readings, settings, True)

"""What the dashboard pages show: counts, sensor lists with sparklines, chart ranges.

Everything public goes through :func:`co2logserver.readback.sensor_view` with
``exact=False``, so no page shows a location more precise than
``CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS`` or any SECRET. No Flask.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver import readback
from co2logserver.errors import BadRequest
from co2logserver.forwarding.errors import scrub
from co2logserver.readings import BY_CODE, QUANTITIES
from co2logserver.store import Store, outbox
from co2logserver.store import accounts as accounts_sql
from co2logserver.store import dashboard as dashboard_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.columns import Columns

#: Bucket lengths a chart may use, shortest first (seconds).
INTERVALS = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    604800,
)
HOUR = 3600
#: Most buckets per chart line: enough detail for a wide screen, cheap to draw.
MAX_POINTS = 720
#: Last second a page can show (datetime's year 9999).
LATEST = 253402300799
#: Preset time ranges of the sensor page, in seconds.
RANGES = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
#: Which reading a sensor's sparkline shows, when it has several types.
SPARKLINE_PREFERENCE = (
    "PM2_5",
    "PM10",
    "NO2",
    "O3",
    "CO",
    "SO2",
    "PB",
    "TEMP",
    "HUM",
    "PRES",
)
SPARKLINE_POINTS = 30
#: Settings blanked out of the forwarder's last error before a page shows it.
CREDENTIALS = ("PASSWORD", "EMAIL", "USERNAME")
#: Sensors a page of the sensor list shows (its HTML stays well under 100 KB).
SENSORS_PER_PAGE = 50
#: Highest ``page`` accepted, and the longest search.
MAX_PAGE = 1_000_000
MAX_SEARCH = 200
#: Sort keys of the sensor list.
SORT_KEYS = ("suid", "model", "location", "secure", "last_reading", "reading_count")


def redact(text: str | None, secrets: list[str]) -> str | None:
    """The forwarder's last error, shortened and without credentials in it.

    Scrubbed by forwarding's one rule (credentials, tokens), then cut to 300.
    """
    if not text:
        return text
    return scrub(text, secrets)[:300]


def overview(store: Store, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the dashboard (``/``) shows, from one call."""
    now = datetime.datetime.now(datetime.UTC)
    with store.reading() as conn:
        counts = dashboard_sql.sensor_counts(
            conn, settings["CO2LOGSERVER_SILENT_AFTER"], now.timestamp()
        )
        forwarder = outbox.status(conn)
    forwarder["last_error"] = redact(
        forwarder["last_error"],
        [settings.get(f"CO2LOGSERVER_OSEM_{key}") or "" for key in CREDENTIALS],
    )
    return {
        "now": now,
        **dashboard_sql.upload_counts(store, now),
        "forwarding": bool(settings["CO2LOGSERVER_OSEM_UPLOAD"]),
        "forwarder": forwarder,
        **counts,
    }


def spark_type(rows: list[tuple[int, int, float]]) -> str | None:
    """The type a sensor's sparkline shows: the most preferred one among ``rows``."""
    present = {BY_CODE[code].name for _ts, code, _value in rows if code in BY_CODE}
    return next((n for n in SPARKLINE_PREFERENCE if n in present), None)


def sparkline(rows: list[tuple[int, int, float]]) -> tuple[str, list[float]]:
    """A sensor's sparkline from its newest rows: the preferred type, oldest first."""
    name = spark_type(rows)
    if name is None:
        return "", []
    code = QUANTITIES[name].code
    values = [value for _ts, c, value in rows if c == code][:SPARKLINE_POINTS]
    return name, values[::-1]


def sparklines(conn, registration_ids: list[int]) -> dict[int, tuple[str, list[float]]]:
    """The sparklines of a page's sensors, in two bounded statements.

    The newest rows of each sensor (one post's worth: a row per known quantity)
    say which types it sends; then the newest :data:`SPARKLINE_POINTS` of the
    preferred type. At most ~50 rows per sensor, never its history.
    """
    newest = dashboard_sql.newest_readings(conn, registration_ids, len(QUANTITIES))
    chosen = {}
    for registration_id, rows in newest.items():
        name = spark_type(rows)
        if name is not None:
            chosen[registration_id] = QUANTITIES[name].code
    points = dashboard_sql.newest_readings(
        conn, list(chosen), SPARKLINE_POINTS, types=chosen
    )
    lines: dict[int, tuple[str, list[float]]] = {i: ("", []) for i in registration_ids}
    for registration_id, code in chosen.items():
        values = [value for _ts, _c, value in points[registration_id]]
        lines[registration_id] = (BY_CODE[code].name, values[::-1])
    return lines


def parse_page(text: str | None) -> int:
    """The ``page`` of the sensor list (1 when absent).

    :raise BadRequest: for a page that is not a whole number from 1.
    """
    if text in (None, ""):
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def sensor_list(
    store: Store,
    settings: Mapping[str, Any],
    sort: str = "last_reading",
    descending: bool = True,
    page: int = 1,
    search: str | None = None,
) -> dict[str, Any]:
    """One page of the sensor list: public views, silence flags and sparklines.

    Sorted and paged in SQL (:data:`SENSORS_PER_PAGE` a page); ``search`` finds
    sensors by SUID prefix, alias or model. Also the number of sensors (found)
    and of silent ones, and the number of pages.

    :raise BadRequest: for an unknown sort key or a search that is too long.
    """
    if sort not in SORT_KEYS:
        raise BadRequest("sort must be one of " + ", ".join(SORT_KEYS))
    if search is not None and len(search) > MAX_SEARCH:
        raise BadRequest(f"q may be at most {MAX_SEARCH} characters")
    decimals = settings["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]
    silent_after = settings["CO2LOGSERVER_SILENT_AFTER"]
    now = time.time()
    with store.reading() as conn:
        if search:
            counts = dashboard_sql.search_counts(conn, search, silent_after, now)
        else:
            counts = dashboard_sql.sensor_counts(conn, silent_after, now)
        rows = dashboard_sql.sensor_page(
            conn,
            sort,
            descending,
            (page - 1) * SENSORS_PER_PAGE,
            SENSORS_PER_PAGE,
            decimals,
            search,
        )
        hidden = accounts_sql.hidden_locations(conn)
        lines = sparklines(conn, [row.registration_id for row in rows])
    views = []
    for row in rows:
        view = readback.sensor_view(row, decimals, False, row.suid not in hidden)
        view["silent"] = row.last_ts is None or row.last_ts < now - silent_after
        view["spark_type"], view["spark"] = lines[row.registration_id]
        views.append(view)
    return {
        "sensors": views,
        "total": counts["sensors"],
        "silent": counts["silent"],
        "page": page,
        "pages": max(1, -(-counts["sensors"] // SENSORS_PER_PAGE)),
    }


@dataclass
class TimeRange:
    """The span a sensor page charts: ``[start, end)`` in UNIX seconds."""

    name: str
    start: int
    end: int
    interval: int


def pick_interval(span: int) -> int:
    """The shortest bucket length that keeps a chart line within MAX_POINTS."""
    for interval in INTERVALS:
        if span / interval <= MAX_POINTS:
            return interval
    return INTERVALS[-1]


def time_range(args: Mapping[str, str], now: int | None = None) -> TimeRange:
    """Read ``range`` (24h, 7d, 30d or custom) with ``from`` and ``to``.

    :raise BadRequest: for an unknown range or times that are not times.
    """
    now = int(time.time()) if now is None else now
    name = args.get("range") or "24h"
    if name in RANGES:
        start, end = now - RANGES[name], now
    elif name == "custom":
        end = readback.parse_time(args.get("to"), "to") or now
        start = readback.parse_time(args.get("from"), "from") or end - RANGES["24h"]
    else:
        raise BadRequest("range must be 24h, 7d, 30d or custom")
    if not LATEST >= end > start >= 0:
        raise BadRequest("from must be earlier than to, both between 1970 and 9999")
    return TimeRange(name, start, end, pick_interval(end - start))


def chart_data(store: Store, suid: str, span: TimeRange) -> dict[str, Any]:
    """The aggregated buckets of one sensor over ``span``, as the API gives them.

    :raise BadRequest: for a malformed SUID.
    :raise NotFound: for a sensor that never registered nor posted.

    Buckets of whole hours widen the range to whole hours (their first and last
    bucket are then whole too), so they are read from the hourly rollups.
    """
    start, end = span.start, span.end
    if span.interval % HOUR == 0:
        start, end = start - start % HOUR, end + -end % HOUR
    query = readback.ReadingsQuery(
        suid=suid,
        start=start,
        end=end,
        types=None,
        verified=None,
        cursor=None,
        limit=1,
        aggregate=span.interval,
        format="json",
    )
    return readback.aggregate(store, query)


def bucket_table(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Buckets grouped by type for the page's table: ``[{type, unit, buckets}]``."""
    groups: dict[str, dict[str, Any]] = {}
    for bucket in data["buckets"]:
        group = groups.setdefault(
            bucket["type"],
            {"type": bucket["type"], "unit": bucket["unit"], "buckets": []},
        )
        group["buckets"].append(bucket)
    return list(groups.values())


#: Name parts of columns that are no measurement, never drawn as a series: times
#: (``time_utc`` of 0.1.2's examples is a number), ids, checksums and locations.
NOT_MEASURED = re.compile(
    r"(?:^|_)(?:time|timestamp|date|datetime|ts|utc|epoch|id|uuid|suid|checksums?"
    r"|lat|latitude|lon|lng|longitude|height|elevation|alt|altitude)(?:_|$)",
    re.IGNORECASE,
)


def is_measured(name: str) -> bool:
    """Whether a numeric column holds a measurement a chart should draw."""
    return NOT_MEASURED.search(name) is None


def chart_columns(
    header: list[str], columns: Columns, settings: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Which columns of a download can be a chart's time axis, and which to draw.

    Time candidates are the configured time columns (``CO2LOGSERVER_TIME_COLS``),
    then the upload time, in that order; the page's script takes the first that
    has values, so the upload time is the x axis only for rows without a time.
    Numbers are drawn unless :func:`is_measured` says they are no measurement.
    """
    wanted = [
        *settings["CO2LOGSERVER_TIME_COLS"],
        settings["CO2LOGSERVER_UPLOAD_TIME_COL"],
    ]
    lower = {name.lower(): name for name in header}
    times = list(dict.fromkeys(lower[c.lower()] for c in wanted if c.lower() in lower))
    numeric = [
        name
        for name in header
        if name not in times
        and name in columns
        and columns.kind(name) in ("int", "float")
        and is_measured(name)
    ]
    return {"time_columns": times, "numeric_columns": numeric if times else []}


def map_markers(store: Store, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every sensor with a public location: rounded position, name, latest value.

    Positions come from :func:`readback.sensor_view` (rounded, hidden ones left
    out); the value is the newest ``CO2LOGSERVER_MAP_QUANTITY`` reading among the
    sensor's newest readings (the sparkline's bounded query).
    """
    code = QUANTITIES[settings["CO2LOGSERVER_MAP_QUANTITY"]].code
    decimals = settings["CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS"]
    with store.reading() as conn:
        rows = list(sensor_sql.list_sensors(conn))
        hidden = accounts_sql.hidden_locations(conn)
        names = accounts_sql.profile_names(conn)
        rows = [r for r in rows if r.suid not in hidden and r.latitude is not None]
        newest = dashboard_sql.newest_readings(
            conn,
            [row.registration_id for row in rows],
            SPARKLINE_POINTS * len(QUANTITIES),
        )
    markers = []
    for row in rows:
        view = readback.sensor_view(row, decimals, False, True)
        if view["location"] is None:
            continue
        values = [v for _ts, c, v in newest[row.registration_id] if c == code]
        markers.append(
            {
                "suid": row.suid,
                "name": names.get(row.suid),
                "latitude": view["location"]["latitude"],
                "longitude": view["location"]["longitude"],
                "value": values[0] if values else None,
            }
        )
    return markers


def display_name(store: Store, suid: str) -> str | None:
    """The name the owner gave the sensor, or ``None``."""
    with store.reading() as conn:
        row = accounts_sql.profile(conn, suid)
    return row.name if row is not None else None

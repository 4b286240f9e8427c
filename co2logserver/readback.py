"""Read the sensor API's data back: public sensor views, reading pages, buckets.

Locations leave here rounded to ``CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS`` unless the
caller has proven to be an admin; SECRETs never leave here at all. No Flask.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver import auth
from co2logserver.errors import BadRequest, NotFound
from co2logserver.readings import QUANTITIES, location_view
from co2logserver.store import Store
from co2logserver.store import accounts as accounts_sql
from co2logserver.store import history as history_sql
from co2logserver.store import sensors as sensor_sql
from co2logserver.store.selection import ReadingSelection

#: Largest UNIX time accepted in a query (the year 9999).
LATEST_SECONDS = 253402300799
INTERVAL = re.compile(r"(\d+)\s*([smhdw]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def sensor_view(
    row, decimals: int, exact: bool = False, public: bool = True
) -> dict[str, Any]:
    """What the API shows of a sensor; further metadata only to admins.

    ``public=False``: the owner hid the location, so only admins see one.
    """
    view = {
        "suid": row.suid,
        "alias": row.alias,
        "protocol": protocol_of(row.alias),
        "manufacturer": row.manufacturer,
        "model": row.model,
        "location": location_view(row, decimals, exact, public),
        "secure": bool(row.secure),
        "registered_at": row.updated_at,
        "first_reading": row.first_ts,
        "last_reading": row.last_ts,
        "reading_count": row.reading_count,
    }
    if exact:
        view["metadata"] = json.loads(row.extra) if row.extra else {}
    return view


def protocol_of(alias: str | None) -> str:
    """The protocol a sensor speaks: its alias's prefix, else OpenSmog."""
    return alias.partition(":")[0] if alias else "opensmog"


def list_sensor_views(
    store: Store,
    decimals: int,
    exact: bool,
    alias: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Sensors as the API shows them; ``alias`` finds a protocol's devices.

    ``after`` and ``limit`` page the list (see :func:`sensors_page`).
    """
    with store.reading() as conn:
        rows = sensor_sql.list_sensors(conn, alias, after, limit)
        hidden = accounts_sql.hidden_locations(conn)
    return [sensor_view(row, decimals, exact, row.suid not in hidden) for row in rows]


#: Longest sensor-list cursor (a SUID or a protocol device's SUID) accepted.
MAX_CURSOR = 200


def sensors_page(
    store: Store,
    decimals: int,
    exact: bool,
    args: Mapping[str, str],
    settings: Mapping,
) -> dict[str, Any]:
    """``GET /v1/sensors``: a page of sensors by SUID, ``next`` when there are more.

    The answer stays ``{"sensors": [...]}`` for a list that fits one page (1000 by
    default), so clients of the unpaged list keep working.

    :raise BadRequest: for a bad ``limit`` or ``cursor``.
    """
    limit = parse_page_size(
        args.get("limit"),
        settings["CO2LOGSERVER_SENSORS_PAGE_SIZE"],
        settings["CO2LOGSERVER_READINGS_MAX_PAGE_SIZE"],
    )
    cursor = args.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise BadRequest("cursor is not one this server gave out; start without it")
    views = list_sensor_views(
        store, decimals, exact, args.get("alias") or None, cursor, limit + 1
    )
    page: dict[str, Any] = {"sensors": views[:limit]}
    if len(views) > limit:
        page["next"] = views[limit - 1]["suid"]
    return page


def get_sensor_view(store: Store, suid: str, decimals: int, exact: bool) -> dict:
    """One sensor as the API shows it.

    :raise BadRequest: for a malformed SUID.
    :raise NotFound: when the sensor has never registered nor posted.
    """
    suid = auth.parse_suid(suid)
    with store.reading() as conn:
        row = sensor_sql.get_sensor(conn, suid)
        hidden = accounts_sql.hidden_locations(conn)
    if row is None:
        raise NotFound(f"No sensor {suid} has registered or posted readings")
    return sensor_view(row, decimals, exact, suid not in hidden)


def parse_time(text: str | None, name: str) -> int | None:
    """A query time: UNIX seconds or ISO 8601 (UTC when no zone is given)."""
    if text in (None, ""):
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        seconds = float(text)
        if not -LATEST_SECONDS <= seconds <= LATEST_SECONDS:
            raise BadRequest(f"{name} is out of range; use UNIX seconds or ISO 8601")
        return int(seconds)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name} must be UNIX seconds or ISO 8601, not {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def parse_types(text: str | None) -> list[str] | None:
    """``type=PM10,TEMP``: the names asked for (codes are found with the data)."""
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return [n.upper() if n.upper() in QUANTITIES else n.lower() for n in names]


def type_codes(store: Store, conn, names: list[str] | None) -> tuple[int, ...] | None:
    """The codes of ``type=`` names, built-in or learned by this database.

    :raise BadRequest: naming the first type no quantity has.
    """
    if not names:
        return None
    codes = []
    for name in names:
        quantity = store.quantities.find(conn, name)
        if quantity is None:
            raise BadRequest(
                f"type: unknown reading type {name!r}; known: "
                + ", ".join([*QUANTITIES, *store.quantities.learned_names()])
            )
        codes.append(quantity.code)
    return tuple(codes)


def parse_verified(text: str | None) -> bool | None:
    """``verified=true|false`` (absent: both)."""
    if text in (None, ""):
        return None
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest("verified must be true or false")


def parse_interval(text: str) -> int:
    """``aggregate=3600``, ``15m``, ``1h``, ``1d``: bucket length in seconds."""
    match = INTERVAL.fullmatch(text.strip().lower())
    seconds = int(match[1]) * UNIT_SECONDS[match[2]] if match else 0
    if not 1 <= seconds <= LATEST_SECONDS:
        raise BadRequest("aggregate must be an interval such as 60, 15m, 1h or 1d")
    return seconds


def parse_cursor(text: str | None) -> tuple[int, int, int] | None:
    """The opaque ``cursor`` of the next page: registration, time and type."""
    if not text:
        return None
    parts = text.split("-")
    if len(parts) != 3 or not all(p.isdigit() and len(p) < 19 for p in parts):
        raise BadRequest("cursor is not one this server gave out; start without it")
    return int(parts[0]), int(parts[1]), int(parts[2])


def parse_page_size(text: str | None, default: int, maximum: int) -> int:
    """``limit``: a whole number above 0 (0 used to give one item), capped.

    :raise BadRequest: for anything else.
    """
    if text in (None, ""):
        return min(default, maximum)
    if not re.fullmatch(r"[0-9]+", text) or not text.strip("0"):
        raise BadRequest(f"limit must be a whole number above 0, not {text[:20]!r}")
    return min(int(text) if len(text) < 19 else maximum, maximum)


@dataclass
class ReadingsQuery:
    """A checked ``GET /v1/sensors/<SUID>/readings``."""

    suid: str
    start: int | None
    end: int | None
    types: list[str] | None
    verified: bool | None
    cursor: tuple[int, int, int] | None
    limit: int
    aggregate: int | None
    format: str


def parse_readings_query(
    suid: str, args: Mapping[str, str], settings: Mapping
) -> ReadingsQuery:
    """Read the query parameters of the readings read-back.

    :raise BadRequest: naming the parameter that is wrong.
    """
    limit = parse_page_size(
        args.get("limit"),
        settings["CO2LOGSERVER_READINGS_PAGE_SIZE"],
        settings["CO2LOGSERVER_READINGS_MAX_PAGE_SIZE"],
    )
    fmt = args.get("format", "json").lower()
    if fmt not in ("json", "csv"):
        raise BadRequest("format must be json or csv")
    aggregate = args.get("aggregate")
    return ReadingsQuery(
        suid=auth.parse_suid(suid),
        start=parse_time(args.get("from"), "from"),
        end=parse_time(args.get("to"), "to"),
        types=parse_types(args.get("type")),
        verified=parse_verified(args.get("verified")),
        cursor=parse_cursor(args.get("cursor")),
        limit=limit,
        aggregate=parse_interval(aggregate) if aggregate else None,
        format=fmt,
    )


def reading_dict(store: Store, conn, row) -> dict[str, Any]:
    """One reading as JSON."""
    quantity = store.quantities.by_code(conn, row.type)
    return {
        "timestamp": row.ts,
        "type": quantity.name,
        "value": row.value,
        "unit": quantity.unit,
        "verified": bool(row.secure),
    }


def require_sensor(conn, suid: str) -> None:
    """:raise NotFound: for a SUID that never registered nor posted."""
    if sensor_sql.get_sensor(conn, suid) is None:
        raise NotFound(f"No sensor {suid} has registered or posted readings")


def selection(store: Store, conn, query: ReadingsQuery) -> ReadingSelection:
    """The readings ``query`` asks for, its type names turned into codes.

    :raise NotFound: for a SUID that never registered nor posted.
    :raise BadRequest: naming the first type no quantity has.
    """
    require_sensor(conn, query.suid)
    codes = type_codes(store, conn, query.types)
    return ReadingSelection(query.suid, query.start, query.end, codes, query.verified)


def readings_page(store: Store, query: ReadingsQuery) -> dict[str, Any]:
    """One page of readings and the cursor of the next page (``None`` at the end)."""
    with store.reading() as conn:
        chosen = selection(store, conn, query)
        rows = history_sql.page_of_readings(conn, chosen, query.cursor, query.limit + 1)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        readings = [reading_dict(store, conn, row) for row in rows]
    last = rows[-1] if more and rows else None
    return {
        "suid": query.suid,
        "readings": readings,
        "next": f"{last.registration_id}-{last.ts}-{last.type}" if last else None,
    }


def readings_rows(store: Store, query: ReadingsQuery) -> Iterator[tuple]:
    """Every matching reading as CSV cells, streamed with its own connection."""
    with store.reading() as conn:
        chosen = selection(store, conn, query)

    def rows() -> Iterator[tuple]:
        with store.reading() as conn:
            for row in history_sql.stream_readings(conn, chosen, query.cursor):
                q = store.quantities.by_code(conn, row.type)
                yield row.ts, q.name, row.value, q.unit, bool(row.secure)

    return rows()


def aggregate(store: Store, query: ReadingsQuery) -> dict[str, Any]:
    """Buckets of ``query.aggregate`` seconds per type: count, min, mean, max."""
    assert query.aggregate is not None, "callers ask for buckets only when given"
    with store.reading() as conn:
        chosen = selection(store, conn, query)
        rows = history_sql.aggregate_buckets(conn, chosen, query.aggregate)
        kinds = {
            code: store.quantities.by_code(conn, code)
            for code in {r.type for r in rows}
        }
    buckets = [
        {
            "type": kinds[row.type].name,
            "unit": kinds[row.type].unit,
            "start": int(row.bucket),
            "count": row.count,
            "min": row.min,
            "mean": float(row.mean),
            "max": row.max,
        }
        for row in rows
    ]
    return {"suid": query.suid, "interval": query.aggregate, "buckets": buckets}

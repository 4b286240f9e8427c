"""The quantity registry and the one public-location rule.

Every reading the sensor API stores is one of these quantities: its name on the wire,
the small integer stored in ``readings.type`` (codes are never reused or renumbered,
so a database of any version reads back the same), its unit and a human title.
Ingest, readback, the dashboard and forwarding all look quantities up here; protocol
adapters (SPEC §9) map their own field names onto these names with :func:`resolve`,
and a name with no mapping becomes a quantity of its own (lower-cased, unit
unknown), which :mod:`co2logserver.store.quantities` allocates per database.

It also owns where a sensor is shown: :func:`public_location` rounds a private
position to ``CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS`` for every public use (API,
pages, OpenSenseMap). Imports nothing of the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quantity:
    """One physical quantity: wire name, stored code, unit and display title."""

    name: str
    code: int
    unit: str
    title: str


_QUANTITIES = (
    # The ten OpenSmog types, with the codes 0.1.x/1.0-dev databases hold.
    Quantity("CO", 1, "mg/m³", "CO"),
    Quantity("PB", 2, "µg/m³", "Pb"),
    Quantity("NO2", 3, "µg/m³", "NO2"),
    Quantity("O3", 4, "µg/m³", "O3"),
    Quantity("PM10", 5, "µg/m³", "PM10"),
    Quantity("PM2_5", 6, "µg/m³", "PM2.5"),
    Quantity("SO2", 7, "µg/m³", "SO2"),
    Quantity("TEMP", 8, "°C", "Temperature"),
    Quantity("HUM", 9, "%", "Humidity"),
    Quantity("PRES", 10, "hPa", "Pressure"),
    # SPEC §9: what common citizen-science firmware measures besides.
    Quantity("CO2", 11, "ppm", "CO2"),
    Quantity("PM1", 12, "µg/m³", "PM1"),
    Quantity("PM4", 13, "µg/m³", "PM4"),
    Quantity("NOISE_LAEQ", 14, "dB(A)", "Noise LAeq"),
    Quantity("NOISE_LA_MIN", 15, "dB(A)", "Noise LA min"),
    Quantity("NOISE_LA_MAX", 16, "dB(A)", "Noise LA max"),
    Quantity("SIGNAL", 17, "dBm", "Signal"),
)

#: Every quantity by its wire name, in registry order.
QUANTITIES: dict[str, Quantity] = {q.name: q for q in _QUANTITIES}
#: Every quantity by the code stored in ``readings.type``.
BY_CODE: dict[int, Quantity] = {q.code: q for q in _QUANTITIES}

#: Field names devices commonly give registry quantities, lower-cased; every
#: protocol adapter looks here after its own table (airrohr's value_types, ...).
COMMON_NAMES: dict[str, str] = {
    "temperature": "TEMP",
    "temp": "TEMP",
    "humidity": "HUM",
    "hum": "HUM",
    "pressure": "PRES",
    "co2": "CO2",
    "carbondioxide": "CO2",
    "pm1": "PM1",
    "pm1_0": "PM1",
    "pm2.5": "PM2_5",
    "pm25": "PM2_5",
    "pm2_5": "PM2_5",
    "pm4": "PM4",
    "pm4_0": "PM4",
    "pm10": "PM10",
    "no2": "NO2",
    "o3": "O3",
    "so2": "SO2",
    "co": "CO",
    "pb": "PB",
    "rssi": "SIGNAL",
    "signal": "SIGNAL",
    "laeq": "NOISE_LAEQ",
    "noise": "NOISE_LAEQ",
    "noise_laeq": "NOISE_LAEQ",
    "noise_la_min": "NOISE_LA_MIN",
    "noise_la_max": "NOISE_LA_MAX",
}

#: What a learned quantity's name may be: printable, short, no control characters.
LEARNED_NAME = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,64}")


def resolve(field: str, own_names: Mapping[str, str] | None = None) -> str:
    """The registry name a protocol's field is stored under.

    In order: the protocol's own table (keys lower-cased), a built-in name in any
    case (``co2`` is ``CO2``), :data:`COMMON_NAMES`; else the lower-cased field
    name itself, a quantity of its own (check it with :func:`learned_name_problem`).
    """
    key = field.strip().lower()
    if own_names and key in own_names:
        return own_names[key]
    if key.upper() in QUANTITIES:
        return key.upper()
    return COMMON_NAMES.get(key, key)


def learned_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a learned quantity's name, or ``None``."""
    if not LEARNED_NAME.fullmatch(name) or name != name.strip():
        return (
            "a reading name must be 1 to 64 printable characters (no lone "
            "surrogates) without surrounding spaces"
        )
    return None


def public_location(
    latitude: float | None,
    longitude: float | None,
    elevation: float | None,
    decimals: int,
) -> tuple[float, float, float | None] | None:
    """A private position as the public may see it, or ``None`` without one.

    Latitude and longitude are rounded to ``decimals`` places of a degree (2 is
    about 1 km) and the elevation to whole metres.
    """
    if latitude is None or longitude is None:
        return None
    height = None if elevation is None else round(elevation)
    return round(latitude, decimals), round(longitude, decimals), height


def location_view(
    row: Any, decimals: int, exact: bool, public: bool = True
) -> dict[str, float] | None:
    """A sensor row's location as a JSON object, rounded unless ``exact``.

    ``public=False`` (the owner hid it, §12) shows no location to the public.
    """
    if not exact and not public:
        return None
    place: tuple[float, float, float | None] | None
    if exact:
        place = (row.latitude, row.longitude, row.elevation)
        if None in place[:2]:
            return None
    else:
        place = public_location(row.latitude, row.longitude, row.elevation, decimals)
        if place is None:
            return None
    view = {"latitude": place[0], "longitude": place[1]}
    if place[2] is not None:
        view["elevation"] = place[2]
    return view

"""Street address to position through a Nominatim-compatible geocoder (§12).

``CO2LOGSERVER_GEOCODER_URL`` names the service (off when unset); a request waits
at most ``CO2LOGSERVER_GEOCODER_TIMEOUT`` seconds. Answers, "found nothing" among
them, are cached in the database for ``CO2LOGSERVER_GEOCODER_CACHE_SECONDS``;
failures are not, so the next try asks again. The address is never logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from co2logserver.errors import ApiError
from co2logserver.store import Store
from co2logserver.store import accounts as sql
from co2logserver.version import __version__

log = logging.getLogger(__name__)

#: Most bytes of a geocoder answer read (one result is a few hundred).
MAX_ANSWER = 256 * 1024


class GeocoderError(ApiError):
    """The geocoder is off, failed, did not answer in time, or found nothing."""

    status = 502


@dataclass(frozen=True)
class Place:
    """Where the geocoder put an address."""

    latitude: float
    longitude: float
    label: str


def cache_key(address: str) -> str:
    """The cache key of an address: blanks collapsed, lower-cased."""
    return " ".join(address.lower().split())[:512]


def search(store: Store, settings: Mapping[str, Any], address: str) -> Place:
    """The position of ``address``, from the cache or the geocoder.

    :raise GeocoderError: with a message for the owner's page.
    """
    base = settings["CO2LOGSERVER_GEOCODER_URL"]
    if not base:
        raise GeocoderError("Address search is off on this server; give lat/lon.")
    key = cache_key(address)
    since = int(time.time() - settings["CO2LOGSERVER_GEOCODER_CACHE_SECONDS"])
    with store.reading() as conn:
        cached = sql.cached_place(conn, key, since)
    if cached is not None:
        return found(cached.latitude, cached.longitude, cached.label)
    place = ask(base, address, settings["CO2LOGSERVER_GEOCODER_TIMEOUT"])
    values: dict[str, Any] = {"latitude": None, "longitude": None, "label": None}
    if place is not None:
        values = {"latitude": place[0], "longitude": place[1], "label": place[2]}
    values["fetched_at"] = int(time.time())
    with store.transaction() as conn:
        sql.cache_place(conn, key, values)
    return found(values["latitude"], values["longitude"], values["label"])


def found(latitude, longitude, label) -> Place:
    """A place, or the "found nothing" error.

    :raise GeocoderError: when the geocoder found nothing.
    """
    if latitude is None or longitude is None:
        raise GeocoderError(
            "The geocoder found no such address; check it, or give lat/lon."
        )
    return Place(latitude, longitude, label or "")


def ask(base: str, address: str, timeout: float) -> tuple[float, float, str] | None:
    """Ask the geocoder; its first result, or ``None`` when it found nothing.

    :raise GeocoderError: when it fails, hangs or answers something else.
    """
    query = urllib.parse.urlencode({"q": address, "format": "jsonv2", "limit": 1})
    request = urllib.request.Request(
        base.rstrip("/") + "/search?" + query,
        headers={"User-Agent": f"co2logserver/{__version__}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER)
    except TimeoutError:
        raise unavailable("did not answer in time") from None
    except urllib.error.HTTPError as error:
        raise unavailable(f"answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise unavailable("did not answer in time") from None
        raise unavailable("cannot be reached") from None
    return first_result(body)


def unavailable(what: str) -> GeocoderError:
    """The error for a geocoder that did not give an answer."""
    log.warning("geocoder %s", what)
    return GeocoderError(
        f"The address search {what}; nothing was changed. Try again later, "
        "or give lat/lon."
    )


def first_result(body: bytes) -> tuple[float, float, str] | None:
    """The first result of a Nominatim ``jsonv2`` answer, checked.

    :raise GeocoderError: for an answer that is not such a list.
    """
    try:
        results = json.loads(body)
        if not isinstance(results, list):
            raise ValueError("not a list")
        if not results:
            return None
        first = results[0]
        latitude, longitude = float(first["lat"]), float(first["lon"])
        label = str(first.get("display_name", ""))[:300]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise unavailable("gave an answer that cannot be read") from None
    if not (
        math.isfinite(latitude)
        and math.isfinite(longitude)
        and -90 <= latitude <= 90
        and -180 <= longitude <= 180
    ):
        raise unavailable("gave a position out of range")
    return latitude, longitude, label

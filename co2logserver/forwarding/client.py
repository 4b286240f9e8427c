"""The OpenSenseMap client: a :class:`BoxPlan` in; boxes, sensors, measurements out.

:meth:`OsemClient.forward` makes sure the plan's senseBox and sensors exist (creating
them as the plan says), then posts the readings it has not posted before, with the
box's access token. Every failure leaves as one of the errors of
:mod:`co2logserver.forwarding.errors`; the workarounds for sensemapi sit in
:mod:`co2logserver.forwarding.account`. An :class:`OsemClient` is not thread-safe:
use one per forwarding thread.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sensemapi.account import SenseMapAccount
from sensemapi.senseBox import senseBox
from sensemapi.sensor import senseBoxSensor

from co2logserver.forwarding import plans
from co2logserver.forwarding.account import OsemAccount, osem_errors
from co2logserver.forwarding.errors import (
    OsemError,
    OsemNoLocation,
    OsemRefused,
    OsemRetryable,
    most_urgent,
)
from co2logserver.forwarding.plans import BoxPlan, Location, Reading, SensorSpec

logger = logging.getLogger(__name__)

UTC = dt.UTC
#: OSEM takes at most this many measurements per ``POST /boxes/<id>/data``.
MAX_MEASUREMENTS_PER_POST = 2500
#: How many posted (sensor, time) pairs are remembered to skip re-posting them.
POSTED_MEMORY = 100_000
#: Stand-in for a coordinate of exactly 0, which sensemapi's ``new_box`` refuses.
NOT_ZERO = 1e-9


def osem_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the time format OSEM stores."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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


@dataclass
class KnownBox:
    """A senseBox of the account, its access token and last accepted position."""

    box: senseBox
    access_token: str | None
    location: Location | None


def known_box(data: dict[str, Any]) -> KnownBox:
    """A KnownBox from OSEM's box JSON (with secrets)."""
    box = senseBox.from_api_json(data)
    location = plans.as_location(box.current_lat, box.current_lon, box.current_height)
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


class OsemClient:
    """Forwards box plans to the account's senseBoxes."""

    def __init__(self, account: SenseMapAccount, settings: Mapping[str, Any]) -> None:
        """Use an account from :func:`make_account` and the app's settings."""
        if not isinstance(account, OsemAccount):
            raise TypeError("OsemClient needs an account made by make_account()")
        self.account = account
        self.min_gap = float(settings["CO2LOGSERVER_OSEM_MIN_SECONDS_BETWEEN_UPLOADS"])
        self.max_move = float(settings["CO2LOGSERVER_OSEM_MAX_POSITION_CHANGE"])
        self.settings = settings
        self._boxes: dict[str, KnownBox] | None = None
        self._fresh = False
        self._last_posted: dict[str, dt.datetime] = {}
        self._posted: collections.OrderedDict[tuple[str, str], None] = (
            collections.OrderedDict()
        )

    # ---------------------------------------------------------------- public

    def forward(self, plan: BoxPlan) -> None:
        """Forward one box's plan: the worker's one call per outbox group.

        :raise OsemNoLocation: before any request if the plan needs a home it lacks,
            or when its box must be created without one (the data has to wait).
        :raise OsemRefused: OSEM refuses the data for good, with its reason.
        :raise OsemRetryable: OSEM is away or the refusal was about our account.
        """
        self._fresh = False
        self._forward_plan(plan)

    def forward_legacy(self, rows: list[dict[str, Any]]) -> None:
        """Forward stored legacy rows, one plan per box (tests and tools).

        :raise OsemRetryable: at once, as OSEM fails for every box then.
        :raise OsemNoLocation, OsemRefused: after trying every box (waiting wins
            over refused); the other boxes' data has been posted.
        """
        self._fresh = False  # one batch: an unknown box reloads the list once
        failures: list[OsemError] = []
        for plan in plans.legacy_plans(rows, self.settings):
            try:
                self._forward_plan(plan)
            except OsemRetryable:
                raise
            except OsemError as error:
                logger.warning("OpenSenseMap box %r: %s", plan.name, error.message)
                failures.append(error)
        if failures:
            raise most_urgent(failures)

    def forward_readings(
        self,
        suid: str,
        location: tuple[float, float, float | None] | None,
        observations: list[tuple[int, dict[str, float]]],
    ) -> None:
        """Forward a sensor's OpenSmog observations to the box of its SUID.

        :raise OsemNoLocation: if ``location`` is None (the data has to wait).
        """
        home = None if location is None else plans.as_location(*location)
        self.forward(plans.readings_plan(suid, home, observations, self.settings))

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

    # -------------------------------------------------------------- per box

    def _forward_plan(self, plan: BoxPlan) -> None:
        """Check the plan's home, then forward it unless it has nothing to send."""
        if plan.home_required and plan.home is None:
            raise OsemNoLocation(f"no valid location known for box {plan.name!r}")
        if plan.readings:
            self._forward_box(plan)

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
        min_gap, max_move = self.min_gap, self.max_move
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

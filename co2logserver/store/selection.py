"""Which readings of one sensor a read-back asks for, and the SQL conditions of it.

Pages, streams, raw buckets, rollup buckets and a day of the archive all select
readings by the same rule: the sensor's registrations (all, or the verified or
unverified ones), a time range ``[start, end)`` and a set of types. The rule
lives here once; each query only says which of its columns hold the time and
the type (``readings.ts`` or ``rollups_hourly.hour``), so the raw and the rolled
up answers cannot drift apart. A module of its own, as ``history`` imports
``rollups`` and both need it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement

from co2logserver.store.schema import registrations


@dataclass(frozen=True, slots=True)
class ReadingSelection:
    """The readings of ``suid`` in ``[start, end)`` of ``types``; ``None``: no bound.

    ``verified``: ``True`` for secure registrations only, ``False`` for the others,
    ``None`` for both. Empty ``types`` select every type, like ``None``.
    """

    suid: str
    start: int | None = None
    end: int | None = None
    types: tuple[int, ...] | None = None
    verified: bool | None = None

    def of_registrations(self) -> list[ColumnElement[bool]]:
        """The conditions on ``registrations``: the sensor and its kind."""
        conditions = [registrations.c.suid == self.suid]
        if self.verified is not None:
            conditions.append(registrations.c.secure == self.verified)
        return conditions

    def of_readings(
        self, ts: ColumnElement[int], kind: ColumnElement[int]
    ) -> list[ColumnElement[bool]]:
        """The conditions on a time column ``ts`` and a type column ``kind``."""
        conditions = []
        if self.start is not None:
            conditions.append(ts >= self.start)
        if self.end is not None:
            conditions.append(ts < self.end)
        if self.types:
            conditions.append(kind.in_(list(self.types)))
        return conditions

    def conditions(
        self, ts: ColumnElement[int], kind: ColumnElement[int]
    ) -> list[ColumnElement[bool]]:
        """Both, for a query that joins ``registrations`` to its readings."""
        return [*self.of_registrations(), *self.of_readings(ts, kind)]

"""The quantities one database learned, on top of the built-in registry.

SPEC §9: a protocol field with no mapping in :mod:`co2logserver.readings` is stored
as a quantity of its own. Its code is allocated here, in the ``quantities`` table,
inside the ingest transaction, so every worker and host agrees on it and a
database read by any version shows the same names. Each ``Store``
keeps its own cache (tests run several databases in one process); a code learned
in a transaction that rolls back is forgotten with it, so no reading is ever
written under a code that no committed row names.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from co2logserver.readings import BY_CODE, QUANTITIES, Quantity
from co2logserver.store.prepared import driver_rows, placeholders
from co2logserver.store.schema import quantities

#: Learned codes start here; the built-in ones stay far below.
FIRST_LEARNED_CODE = 1000
#: At most this many learned quantities (readings.type is a SMALLINT; a flood of
#: made-up field names must not grow the registry without end).
MAX_LEARNED = 2000


class TooManyQuantities(Exception):
    """The database already holds ``MAX_LEARNED`` learned quantities."""


class Quantities:
    """Built-in plus learned quantities of one database, cached per process."""

    def __init__(self) -> None:
        self._by_name: dict[str, Quantity] = {}
        self._by_code: dict[int, Quantity] = {}
        self._pending: list[Quantity] = []

    def find(self, conn: Connection, name: str) -> Quantity | None:
        """The quantity stored under wire name ``name``, or ``None``."""
        quantity = QUANTITIES.get(name) or self._known_name(name)
        if quantity is None:
            self.load(conn)
            quantity = self._by_name.get(name)
        return quantity

    def by_code(self, conn: Connection, code: int) -> Quantity:
        """The quantity of a stored code (a placeholder if no row names it)."""
        quantity = BY_CODE.get(code) or self._by_code.get(code)
        if quantity is None:
            self.load(conn)
            quantity = self._by_code.get(code)
        return quantity or Quantity(f"type_{code}", code, "", f"type {code}")

    def code_for(self, conn: Connection, name: str, unit: str = "") -> int:
        """The code of ``name``, allocating one in this transaction if it is new.

        :raise TooManyQuantities: when the database holds ``MAX_LEARNED`` already.
        """
        quantity = self.find(conn, name)
        if quantity is not None:
            return quantity.code
        while True:
            code = self._next_code(conn)
            sql = (
                "INSERT INTO quantities (code, name, unit) VALUES "
                f"({placeholders(conn, 3)}) ON CONFLICT DO NOTHING RETURNING code"
            )
            if driver_rows(conn, sql, [code, name, unit]):
                break
            row = conn.execute(
                select(quantities.c.code).where(quantities.c.name == name)
            ).first()
            if row is not None:  # another worker learned it first
                code = row[0]
                break
        learned = Quantity(name, code, unit, name)
        self._pending.append(learned)
        self._remember(learned)
        return code

    def load(self, conn: Connection) -> None:
        """Read every learned quantity of the database into the cache."""
        for code, name, unit in conn.execute(select(quantities)):
            self._remember(Quantity(name, code, unit or "", name))

    def settled(self, committed: bool) -> None:
        """Keep what a committed transaction learned; forget a rolled-back one's."""
        if not committed:
            for quantity in self._pending:
                self._by_name.pop(quantity.name, None)
                self._by_code.pop(quantity.code, None)
        self._pending.clear()

    def pending_mark(self) -> int:
        """Where a savepoint begins in what the transaction learned."""
        return len(self._pending)

    def forget_since(self, mark: int) -> None:
        """A savepoint rolled back: forget what was learned since ``mark``."""
        for quantity in self._pending[mark:]:
            self._by_name.pop(quantity.name, None)
            self._by_code.pop(quantity.code, None)
        del self._pending[mark:]

    def learned_names(self) -> list[str]:
        """Names of the learned quantities this process knows, sorted."""
        return sorted(self._by_name)

    def _known_name(self, name: str) -> Quantity | None:
        return self._by_name.get(name)

    def _remember(self, quantity: Quantity) -> None:
        self._by_name[quantity.name] = quantity
        self._by_code[quantity.code] = quantity

    def _next_code(self, conn: Connection) -> int:
        highest = conn.exec_driver_sql("SELECT MAX(code) FROM quantities").scalar()
        code = FIRST_LEARNED_CODE if highest is None else highest + 1
        if code >= FIRST_LEARNED_CODE + MAX_LEARNED:
            raise TooManyQuantities(
                f"this server already stores {MAX_LEARNED} reading types of its own"
            )
        return code

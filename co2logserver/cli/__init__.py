"""Command line: ``python3 -m co2logserver`` with the options of 0.1.2, and tools.

:mod:`~.app` holds the command group and the server's commands; :mod:`~.owners`
(owner accounts) and :mod:`~.data` (retention, archives, rollups) add theirs to it
when imported here, so ``co2logserver.cli:main`` has every command.
"""

from co2logserver.cli import data, owners  # noqa: F401  (they add their commands)
from co2logserver.cli.app import build_app, main, overrides_from

__all__ = ["build_app", "main", "overrides_from"]

"""Blueprints of the firmware protocols (SPEC §9), one module per protocol.

Each module here is an adapter's HTTP side: it defines ``bp`` (a Blueprint) and
``OPENAPI_PATHS`` (its entries of ``/openapi.json``), reads the request, hands it to
its parser in :mod:`co2logserver.protocols` and the result to
:func:`co2logserver.devices.submit_devices`, and answers in the protocol's own
shape. :func:`modules` finds them, so adding a protocol touches no shared file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules() -> list[ModuleType]:
    """Every protocol blueprint module, in name order."""
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
    ]

"""The import rules of docs/architecture.rst, read from the source with ``ast``.

Each rule lists today's exceptions by name with the reason they are allowed, so a
new exception is a decision someone writes down here, not an accident.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "co2logserver"

#: Modules outside co2logserver/store/ that may import sqlalchemy, and why.
SQLALCHEMY_OUTSIDE_STORE = {
    # Checks CO2LOGSERVER_DB at start-up with sqlalchemy.engine.make_url, so a bad
    # URL is a ConfigError naming the key before any engine exists. No SQL.
    "co2logserver.config_checks",
}

#: Modules outside co2logserver/web/ that may import flask's ``request``, and why.
REQUEST_OUTSIDE_WEB = {
    # The rate limiter's key functions name the client and the view of the
    # request being limited; Flask-Limiter calls them inside the request.
    "co2logserver.limits",
    # The after_request hook counts each response by endpoint and method.
    "co2logserver.metrics",
}

#: Modules outside co2logserver/web/ that may import co2logserver.web: the app
#: factory registers the blueprints.
WEB_IMPORTERS_OUTSIDE_WEB = {"co2logserver"}

#: What the store may import from the package besides itself.
STORE_MAY_IMPORT = {
    "co2logserver.errors",
    "co2logserver.readings",
    "co2logserver.utils",
    # store.queries reads download filter bounds with the upload number rule.
    "co2logserver.parsers",
}

#: How long a module may grow (docs/architecture.rst: one concept a module, about
#: 100 to 400 lines); a longer one is split along its concepts (#14).
MAX_MODULE_LINES = 400

#: Modules that are longer today, and why.
LONG_MODULES = {
    # A table: every configuration key with the comment that gives its reason.
    "co2logserver.config_default",
}

#: What each part of a module split along its concepts (#14) may import of the
#: package: the parts are layers of their own, so a lower one never reaches up.
PARTS_MAY_IMPORT = {
    # Checks of a request: the value rules of the store, never its writes.
    "co2logserver.upload_checks": {
        "co2logserver.errors",
        "co2logserver.parsers",
        "co2logserver.store.columns",
    },
    "co2logserver.observation_checks": {
        "co2logserver.errors",
        "co2logserver.parsers",
        "co2logserver.readings",
        "co2logserver.store.columns",
    },
    "co2logserver.mqtt": {
        "co2logserver.mqtt.handler",
        "co2logserver.mqtt.subscriber",
        "co2logserver.mqtt.topics",
    },
    "co2logserver.mqtt.topics": {"co2logserver.errors"},
    "co2logserver.mqtt.handler": {
        "co2logserver.errors",
        "co2logserver.ingest",
        "co2logserver.mqtt.topics",
        "co2logserver.rejected",
        "co2logserver.store",
    },
    "co2logserver.mqtt.subscriber": {
        "co2logserver.errors",
        "co2logserver.metrics",
        "co2logserver.mqtt.handler",
        "co2logserver.mqtt.topics",
        "co2logserver.store",
        "co2logserver.store.errors",
    },
    "co2logserver.protocols.lineprotocol.points": set(),
    "co2logserver.protocols.lineprotocol.scanner": {
        "co2logserver.protocols.lineprotocol.points",
    },
    "co2logserver.protocols.lineprotocol.plain": {
        "co2logserver.protocols.lineprotocol.points",
        "co2logserver.protocols.lineprotocol.scanner",
    },
    "co2logserver.protocols.lineprotocol": {
        "co2logserver.errors",
        "co2logserver.protocols.lineprotocol.plain",
        "co2logserver.protocols.lineprotocol.points",
        "co2logserver.protocols.lineprotocol.scanner",
    },
    "co2logserver.web.openapi.parts": set(),
    "co2logserver.web.openapi.owners": {"co2logserver.web.openapi.parts"},
    "co2logserver.web.openapi.core": {
        "co2logserver.version",
        "co2logserver.web.openapi.owners",
        "co2logserver.web.openapi.parts",
    },
    "co2logserver.web.openapi.archive": {"co2logserver.web.openapi.parts"},
    "co2logserver.web.openapi": {
        "co2logserver.web.openapi.archive",
        "co2logserver.web.openapi.core",
        "co2logserver.web.protocols",
    },
}

#: Packages made of one module's concepts: each of their modules is in the table.
SPLIT_PACKAGES = (
    "co2logserver.mqtt",
    "co2logserver.protocols.lineprotocol",
    "co2logserver.web.openapi",
)


def module_name(path: Path) -> str:
    """``co2logserver/store/__init__.py`` -> ``co2logserver.store``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(name: str) -> frozenset[str]:
    """Everything ``name`` imports, anywhere in the module (functions too).

    ``from package import name`` counts as an import of the submodule when there is
    one, else of the package; ``from flask import request`` is ``flask.request``.
    """
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                internal = base.startswith("co2logserver")
                if not internal or candidate in modules():
                    found.add(candidate)
                else:
                    found.add(base)
    return frozenset(found)


def importers(predicate) -> set[str]:
    """The package's modules with an import that ``predicate`` says yes to."""
    return {name for name in modules() if any(map(predicate, imports(name)))}


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_import_reader_sees_known_imports():
    """A guard for the rules below: they pass trivially if nothing is found."""
    assert "co2logserver.store" in imports("co2logserver.ingest")
    assert "co2logserver.web.common" in imports("co2logserver.web.legacy")
    assert "flask.request" in imports("co2logserver.web.common")
    assert "sqlalchemy.Column" in imports("co2logserver.store.schema")


def test_sql_only_in_the_store():
    found = importers(lambda imported: is_within(imported, "sqlalchemy"))
    outside = {m for m in found if not is_within(m, "co2logserver.store")}
    assert outside == SQLALCHEMY_OUTSIDE_STORE


def test_store_imports_only_the_modules_below_it():
    for name in modules():
        if not is_within(name, "co2logserver.store"):
            continue
        internal = {i for i in imports(name) if is_within(i, "co2logserver")}
        beyond = {i for i in internal if not is_within(i, "co2logserver.store")}
        assert beyond <= STORE_MAY_IMPORT, name


def test_the_stores_error_imports_nothing_of_the_package():
    """Every layer catches StorageUnavailable: its module must not reach up."""
    internal = [i for i in imports("co2logserver.store.errors") if "co2logserver" in i]
    assert internal == []


def test_the_stores_error_is_no_http_error():
    """The store knows nothing of HTTP: its outage is no ApiError with a status."""
    from co2logserver import errors
    from co2logserver.store import StorageUnavailable
    from co2logserver.store import errors as store_errors

    assert StorageUnavailable is store_errors.StorageUnavailable
    assert not issubclass(StorageUnavailable, errors.ApiError)
    assert not hasattr(StorageUnavailable("away", 7), "status")
    assert not hasattr(errors, "StorageUnavailable")


def test_readings_imports_nothing_of_the_package():
    internal = [i for i in imports("co2logserver.readings") if "co2logserver" in i]
    assert internal == []


@pytest.mark.parametrize(
    "name", sorted(n for n in modules() if is_within(n, "co2logserver.protocols"))
)
def test_protocol_parsers_know_neither_http_nor_sql(name):
    forbidden = ("flask", "werkzeug", "sqlalchemy", "co2logserver.store")
    assert not [i for i in imports(name) if any(is_within(i, f) for f in forbidden)]


def test_only_web_reads_the_request():
    found = importers(lambda imported: imported in ("flask.request", "flask.g"))
    outside = {m for m in found if not is_within(m, "co2logserver.web")}
    assert outside == REQUEST_OUTSIDE_WEB


def test_nothing_below_web_imports_web():
    found = importers(lambda imported: is_within(imported, "co2logserver.web"))
    outside = {m for m in found if not is_within(m, "co2logserver.web")}
    assert outside == WEB_IMPORTERS_OUTSIDE_WEB


def group_of(name: str) -> str:
    """Packages are one group each; a top-level module is a group of its own."""
    parts = name.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return name


def test_no_import_cycles_between_groups():
    """Data flows one way: web may import ingest, never the reverse, and so on."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name in modules():
        for imported in imports(name):
            if is_within(imported, "co2logserver"):
                source, target = group_of(name), group_of(imported)
                if source != target:
                    graph[source].add(target)
    assert "co2logserver.store" in graph["co2logserver.ingest"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends on one node, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def lines_of(name: str) -> int:
    return len(modules()[name].read_text(encoding="utf-8").splitlines())


def test_modules_stay_within_their_size():
    long = {name for name in modules() if lines_of(name) > MAX_MODULE_LINES}
    assert long <= LONG_MODULES, "split along its concepts, or say why here"


@pytest.mark.parametrize("name", sorted(LONG_MODULES))
def test_long_module_exceptions_are_still_needed(name):
    """An exception goes when its module is split (or gone), so the list shrinks."""
    assert name in modules() and lines_of(name) > MAX_MODULE_LINES, (
        f"{name} is gone or short now: drop it from LONG_MODULES"
    )


@pytest.mark.parametrize("name", sorted(PARTS_MAY_IMPORT))
def test_parts_of_split_modules_import_only_below_them(name):
    internal = {i for i in imports(name) if is_within(i, "co2logserver")}
    assert internal <= PARTS_MAY_IMPORT[name], name


def test_every_part_of_a_split_package_is_listed():
    """A new module in a split package states what it may import."""
    parts = {n for n in modules() if any(is_within(n, p) for p in SPLIT_PACKAGES)}
    assert parts <= PARTS_MAY_IMPORT.keys(), parts - PARTS_MAY_IMPORT.keys()


def test_only_the_mqtt_subscriber_imports_paho():
    """paho is an optional extra: topics and handler work (and test) without it."""
    found = importers(lambda imported: is_within(imported, "paho"))
    assert found == {"co2logserver.mqtt.subscriber"}


# --------------------------------------------------------------------------------------
# forwarding/: a sensemapi-free core (#14)
# --------------------------------------------------------------------------------------

#: The only modules that may talk HTTP to the OpenSenseMap through sensemapi.
SENSEMAPI_IMPORTERS = {
    "co2logserver.forwarding.account",
    "co2logserver.forwarding.client",
}

FORWARDING = sorted(n for n in modules() if is_within(n, "co2logserver.forwarding"))


def test_only_account_and_client_import_sensemapi_or_requests():
    for library in ("sensemapi", "requests"):
        found = importers(lambda imported, lib=library: is_within(imported, lib))
        assert found <= SENSEMAPI_IMPORTERS, library
    assert "co2logserver.forwarding.account" in found  # the reader sees them


def test_forwarding_core_imports_without_sensemapi(tmp_path):
    """plans, errors and the worker load when sensemapi and requests are absent."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['sensemapi'] = None\n"
        "sys.modules['requests'] = None\n"
        "import co2logserver.forwarding.plans, co2logserver.forwarding.errors\n"
        "import co2logserver.forwarding.worker, co2logserver.forwarding\n"
        "assert 'sensemapi.account' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def settings_gets(path: Path) -> list[int]:
    """Lines calling ``<...settings or config>.get(...)``: a fallback at the use."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        named = owner.attr if isinstance(owner, ast.Attribute) else None
        named = owner.id if isinstance(owner, ast.Name) else named
        if node.func.attr == "get" and named in ("settings", "config"):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("name", FORWARDING)
def test_forwarding_has_no_fallback_defaults(name):
    """Settings are read as configured; defaults live in config_default.py alone."""
    assert settings_gets(modules()[name]) == []


def test_the_fallback_reader_sees_a_get(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("x = self.settings.get('CO2LOGSERVER_A', 1)\n", encoding="utf-8")
    assert settings_gets(sample) == [1]


def test_forwarding_takes_only_the_stores_error_for_a_database_outage():
    """An HTTP error (ApiError) of OSEM must never read as "the database is away"."""
    found = importers(lambda imported: imported == "co2logserver.errors.ApiError")
    assert not [m for m in found if is_within(m, "co2logserver.forwarding")]

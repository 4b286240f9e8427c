"""The package metadata in pyproject.toml is whole and says one thing once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from co2logserver.version import __version__

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_all_extra_is_every_runtime_extra():
    extras = PROJECT["project"]["optional-dependencies"]
    runtime = {
        requirement
        for name, requirements in extras.items()
        if name not in ("all", "test")
        for requirement in requirements
    }
    assert sorted(extras["all"]) == sorted(runtime)


def test_version_is_read_from_the_package():
    assert "version" in PROJECT["project"]["dynamic"]
    attr = PROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "co2logserver.version.__version__"
    assert __version__


def test_sensemapi_has_an_upper_bound():
    """forwarding/account.py leans on sensemapi internals a new minor may move."""
    (requirement,) = PROJECT["project"]["optional-dependencies"]["opensensemap"]
    assert requirement.startswith("sensemapi>=") and ",<" in requirement


def test_the_wheel_holds_every_package():
    """Each package directory (``mqtt/``, ``web/openapi/``, …) is found for the build.

    setuptools' find with the pyproject's ``include`` is what the wheel ships; a
    package it misses would import in a checkout and fail once installed.
    """
    setuptools = pytest.importorskip("setuptools")
    found = setuptools.find_packages(
        where=str(ROOT), **PROJECT["tool"]["setuptools"]["packages"]["find"]
    )
    package = ROOT / "co2logserver"
    directories = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in package.rglob("__init__.py")
    }
    assert {"co2logserver.mqtt", "co2logserver.web.openapi"} <= directories
    assert sorted(found) == sorted(directories)

"""Load and check the configuration, lowest precedence first.

``config_default`` < the file named by ``CO2LOGSERVER_CONFIG`` < ``CO2LOGSERVER_<KEY>``
environment variables < overrides (``create_app(config)`` and the CLI options).
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import traceback
from collections.abc import Mapping
from typing import Any

from co2logserver import config_default
from co2logserver.config_checks import PREFIX, validate
from co2logserver.errors import ConfigError

CONFIG_FILE_VARIABLE = "CO2LOGSERVER_CONFIG"

#: Every configuration key, as defined (and documented) in ``config_default``.
CONFIG_KEYS = tuple(name for name in vars(config_default) if name.startswith(PREFIX))

#: Fallbacks from the environment that 0.1.2 read for the OpenSenseMap credentials.
SENSEMAP_ENVIRONMENT = {
    "CO2LOGSERVER_OSEM_API": "SENSEMAP_API",
    "CO2LOGSERVER_OSEM_EMAIL": "SENSEMAP_EMAIL",
    "CO2LOGSERVER_OSEM_USERNAME": "SENSEMAP_USERNAME",
    "CO2LOGSERVER_OSEM_PASSWORD": "SENSEMAP_PASSWORD",
}


def parse_env_value(text: str) -> Any:
    """Read an environment value as JSON, else a Python literal, else plain text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def prefixed(key: str) -> str:
    """Return the full key name: ``DB`` and ``CO2LOGSERVER_DB`` both name one key."""
    if key.startswith(PREFIX) or PREFIX + key not in CONFIG_KEYS:
        return key
    return PREFIX + key


#: Environment names with the prefix that are not configuration keys.
NON_CONFIG_PREFIXES = (CONFIG_FILE_VARIABLE, PREFIX + "TEST_")


def check_known_keys(names, source: str) -> None:
    """Stop on a misspelled ``CO2LOGSERVER_*`` name instead of silently ignoring it.

    :raise ConfigError: naming the unknown key and the closest known one.
    """
    for name in sorted(names):
        if not name.startswith(PREFIX) or name in CONFIG_KEYS:
            continue
        if name.startswith(NON_CONFIG_PREFIXES):
            continue
        close = difflib.get_close_matches(name, CONFIG_KEYS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown configuration key {name} in {source}{hint}")


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the ``CO2LOGSERVER_<KEY>`` environment variables, values parsed."""
    check_known_keys(environ, "the environment")
    return {
        key: parse_env_value(value)
        for key, value in environ.items()
        if key.startswith(PREFIX) and key != CONFIG_FILE_VARIABLE
    }


def load_config(app, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config`` in precedence order, then check it.

    :raise ConfigError: naming the key of a configuration that cannot work.
    """
    app.config.from_object(config_default)
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file:
        load_config_file(app, config_file)
        check_known_keys(app.config, config_file)
    app.config.update(environment_overrides(os.environ))
    app.config.update({prefixed(k): v for k, v in (overrides or {}).items()})
    apply_sensemap_environment(app.config)
    validate(app.config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["CO2LOGSERVER_MAX_CONTENT_LENGTH"]


def load_config_file(app, config_file: str) -> None:
    """Run the Python configuration file named by ``CO2LOGSERVER_CONFIG``.

    :raise ConfigError: one line naming the file, and the line of a syntax error
        or of the statement that failed.
    """
    path = os.path.abspath(config_file)
    try:
        app.config.from_pyfile(path)
    except OSError as error:
        raise ConfigError(
            f"{CONFIG_FILE_VARIABLE}: cannot read {config_file!r}: {error.strerror}"
        ) from None
    except SyntaxError as error:
        raise ConfigError(
            f"configuration file {path}, line {error.lineno}: syntax error: {error.msg}"
        ) from None
    except Exception as error:
        frames = traceback.extract_tb(error.__traceback__)
        where = [frame.lineno for frame in frames if frame.filename == path]
        line = f", line {where[-1]}" if where else ""
        raise ConfigError(
            f"configuration file {path}{line}: {type(error).__name__}: {error}"
        ) from None


def apply_sensemap_environment(config: dict) -> None:
    """Fill unset OpenSenseMap settings from ``SENSEMAP_*`` variables, as 0.1.2 did."""
    for key, variable in SENSEMAP_ENVIRONMENT.items():
        if config.get(key) is None:
            config[key] = os.environ.get(variable)

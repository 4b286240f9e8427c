"""Load and check the configuration, lowest precedence first.

``config_default`` < the file named by ``CO2LOGSERVER_CONFIG`` < ``CO2LOGSERVER_<KEY>``
environment variables < overrides (``create_app(config)`` and the CLI options).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import logging
import os
import re
import traceback
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from co2logserver import config_default
from co2logserver.errors import ConfigError

PREFIX = "CO2LOGSERVER_"
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

#: Keys that hold the operator's functions.
CALLABLE_KEYS = (
    "AUTH_CHECKER",
    "TIME_CONVERTER",
    "ACCEPT_NEW_COLUMN",
    "ACCEPT_NEW_READING_TYPE",
)
POSITIVE_INTEGER_KEYS = (
    "MAX_LIMIT_OF_ROWS",
    "MAX_ROWS",
    "MAX_NEW_COLUMNS",
    "MAX_COLUMNS",
    "MAX_CONTENT_LENGTH",
    "MAX_OBSERVATIONS",
    "MAX_METADATA_BYTES",
    "READINGS_PAGE_SIZE",
    "READINGS_MAX_PAGE_SIZE",
    "SENSORS_PAGE_SIZE",
    "OSEM_BATCH_SIZE",
    "SILENT_AFTER",
)


POSITIVE_NUMBER_KEYS = (
    "REPLAY_WINDOW",
    "SQLITE_BUSY_TIMEOUT",
    "DB_TIMEOUT",
    "HEALTH_TIMEOUT",
    "RETRY_AFTER",
    "OSEM_MAX_BACKOFF",
    "OSEM_TIMEOUT",
    "OSEM_LEASE_SECONDS",
    "MQTT_KEEPALIVE",
    "MQTT_SESSION_EXPIRY",
    "MQTT_MAX_BACKOFF",
    "GEOCODER_TIMEOUT",
    "GEOCODER_CACHE_SECONDS",
)


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


def validate(config: dict) -> None:
    """Check every key whose wrong value would only fail later, at a sensor's cost.

    :raise ConfigError: with one line naming the key and what to set.
    """
    check_database(config)
    check_string_list(config, "CHECKSUM_SALTS")
    check_string_list(config, "TIME_COLS")
    check_string_list(config, "ADMIN_TOKENS")
    check_secret_list(config, "LORAWAN_WEBHOOK_SECRETS")
    for key in POSITIVE_INTEGER_KEYS:
        check_positive_integer(config, key)
    for key in POSITIVE_NUMBER_KEYS:
        check_positive_number(config, key)
    spool_bytes = config[PREFIX + "SPOOL_MAX_BYTES"]
    if (
        isinstance(spool_bytes, bool)
        or not isinstance(spool_bytes, int)
        or spool_bytes < 0
    ):
        raise ConfigError(
            f"{PREFIX}SPOOL_MAX_BYTES must be a whole number of bytes (0 turns the "
            f"spool off), not {spool_bytes!r}"
        )
    check_regex(config, "SALTED_CHECKSUM_HEADER_REGEX", {"algorithm"}, re.IGNORECASE)
    check_choice(config, "SQLITE_SYNCHRONOUS", ("OFF", "NORMAL", "FULL", "EXTRA"))
    if not isinstance(config[PREFIX + "GROUP_COMMIT"], bool):
        raise ConfigError(
            f"{PREFIX}GROUP_COMMIT must be true or false, not "
            f"{config[PREFIX + 'GROUP_COMMIT']!r}"
        )
    check_loglevel(config)
    check_reregistration(config)
    for key in CALLABLE_KEYS:
        if not callable(config[PREFIX + key]):
            raise ConfigError(f"{PREFIX}{key} must be a function")
    if (
        config["CO2LOGSERVER_UPLOAD_REQUIRES_AUTH"]
        and not config["CO2LOGSERVER_CHECKSUM_SALTS"]
    ):
        raise ConfigError(
            "CO2LOGSERVER_UPLOAD_REQUIRES_AUTH is on but CO2LOGSERVER_CHECKSUM_SALTS "
            "is empty: every upload would be refused; set at least one salt"
        )
    if config["CO2LOGSERVER_OSEM_UPLOAD"]:
        check_osem(config)


def check_database(config: dict) -> None:
    """Accept a file path or an SQLite/PostgreSQL SQLAlchemy URL."""
    value = config["CO2LOGSERVER_DB"]
    if not isinstance(value, str) or not value:
        raise ConfigError("CO2LOGSERVER_DB must be a file path or an SQLAlchemy URL")
    if "://" not in value:
        return
    try:
        backend = make_url(value).get_backend_name()
    except ArgumentError as error:
        raise ConfigError(f"CO2LOGSERVER_DB is not a valid URL: {error}") from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"CO2LOGSERVER_DB: unsupported database {backend!r}; "
            "use a file path, sqlite:///… or postgresql+psycopg://…"
        )


def check_string_list(config: dict, key: str) -> None:
    """Require a list (or tuple) of strings, as 0.1.2's config files gave."""
    value = config[PREFIX + key]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) for v in value
    ):
        raise ConfigError(
            f"{PREFIX}{key} must be a list of strings, e.g. "
            f"{PREFIX}{key}='[\"value\"]', not {type(value).__name__}"
        )


def check_secret_list(config: dict, key: str) -> None:
    """Require a list of non-empty strings: an empty secret would match anyone."""
    check_string_list(config, key)
    if any(not value.strip() for value in config[PREFIX + key]):
        raise ConfigError(
            f"{PREFIX}{key} must not hold an empty secret (it would let every "
            "request in); remove it or set a long random string"
        )


def check_positive_integer(config: dict, key: str) -> None:
    """Require a whole number above zero."""
    value = config[PREFIX + key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{PREFIX}{key} must be a whole number above 0, not {value!r}"
        )


def check_positive_number(config: dict, key: str) -> None:
    """Require a number of seconds above zero."""
    value = config[PREFIX + key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{PREFIX}{key} must be a number above 0, not {value!r}")


def check_regex(config: dict, key: str, groups: set[str], flags: int = 0) -> None:
    """Require a regular expression with the named ``groups``; store it compiled.

    A text value (e.g. from the environment) is compiled with ``flags``.
    """
    value = config[PREFIX + key]
    if isinstance(value, str):
        try:
            value = re.compile(value, flags)
        except re.error as error:
            raise ConfigError(
                f"{PREFIX}{key} is not a regular expression: {error}"
            ) from None
    if not isinstance(value, re.Pattern) or not isinstance(value.pattern, str):
        raise ConfigError(
            f"{PREFIX}{key} must be a regular expression, not {type(value).__name__}"
        )
    missing = groups - set(value.groupindex)
    if missing:
        raise ConfigError(
            f"{PREFIX}{key} lacks the named groups {', '.join(sorted(missing))}"
        )
    config[PREFIX + key] = value


def check_choice(config: dict, key: str, choices: tuple[str, ...]) -> None:
    """Require one of ``choices`` (case-insensitive); store it upper-case."""
    value = str(config[PREFIX + key]).upper()
    if value not in choices:
        raise ConfigError(f"{PREFIX}{key} must be one of {', '.join(choices)}")
    config[PREFIX + key] = value


def check_reregistration(config: dict) -> None:
    """Accept exactly ``"signed"``, ``True`` or ``False``."""
    key = PREFIX + "ALLOW_REREGISTRATION"
    value = config[key]
    if isinstance(value, str) and value.lower() == "signed":
        config[key] = "signed"
    elif value is not True and value is not False:
        raise ConfigError(
            f'{key} must be "signed" (the default), True (unsafe) or False, '
            f"not {value!r}"
        )


def check_loglevel(config: dict) -> None:
    """Accept a level number or name (``DEBUG``, ``INFO``…)."""
    value = config["CO2LOGSERVER_LOGLEVEL"]
    if isinstance(value, str):
        value = logging.getLevelName(value.upper())
    if not isinstance(value, int):
        raise ConfigError("CO2LOGSERVER_LOGLEVEL must be a logging level, e.g. INFO")
    config["CO2LOGSERVER_LOGLEVEL"] = value


def check_osem(config: dict) -> None:
    """Forwarding needs credentials, sensemapi and a usable column expression."""
    if not (config["CO2LOGSERVER_OSEM_EMAIL"] or config["CO2LOGSERVER_OSEM_USERNAME"]):
        raise ConfigError(
            "CO2LOGSERVER_OSEM_UPLOAD is on but neither CO2LOGSERVER_OSEM_EMAIL nor "
            "CO2LOGSERVER_OSEM_USERNAME (or SENSEMAP_EMAIL/SENSEMAP_USERNAME) is set"
        )
    if not config["CO2LOGSERVER_OSEM_PASSWORD"]:
        raise ConfigError(
            "CO2LOGSERVER_OSEM_UPLOAD is on but CO2LOGSERVER_OSEM_PASSWORD "
            "(or SENSEMAP_PASSWORD) is not set"
        )
    # Look for it without importing it: co2logserver.osem is the one importer.
    if importlib.util.find_spec("sensemapi") is None:
        raise ConfigError(
            "CO2LOGSERVER_OSEM_UPLOAD needs the sensemapi package: "
            "pip install 'sensemapi>=0.5,<0.6'"
        )
    check_regex(config, "OSEM_COL_REGEX", {"type", "quantity", "unit"})

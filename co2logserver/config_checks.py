"""Check the loaded configuration: every key whose wrong value would only fail
later, at a sensor's cost, stops the start with one line naming it.

:mod:`co2logserver.config` loads the layers and calls :func:`validate`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from co2logserver.errors import ConfigError

PREFIX = "CO2LOGSERVER_"

#: Keys that hold the operator's functions.
CALLABLE_KEYS = (
    "AUTH_CHECKER",
    "TIME_CONVERTER",
    "ACCEPT_NEW_COLUMN",
    "ACCEPT_NEW_READING_TYPE",
)
#: The operator's functions forwarding calls; it has no fallback for any of them
#: (#14), so forwarding does not start without them. The value filter may be None.
OSEM_CALLABLE_KEYS = (
    "OSEM_COL_REDIRECT",
    "OSEM_BOX_REDIRECT",
    "OSEM_BOX_NAME_GENERATOR",
    "OSEM_SENSOR_TITLE_GENERATOR",
    "OSEM_UNIT_COVERTER",
    "OSEM_ICON_DETERMINER",
    "OSEM_EXPOSURE_DETERMINER",
    "DEFAULT_LAT",
    "DEFAULT_LON",
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
    check_retention(config)
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
    check_archive_dir(config)


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


def check_retention(config: dict) -> None:
    """Retention days are off (``None``) or whole days; rollups outlive raw readings.

    A wrong value here deletes data, so it stops the start rather than guessing.
    """
    for key in ("RETENTION_DAYS", "ROLLUP_RETENTION_DAYS"):
        value = config[PREFIX + key]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(
                f"{PREFIX}{key} must be a whole number of days above 0, or None "
                f"to keep everything, not {value!r}"
            )
    raw = config[PREFIX + "RETENTION_DAYS"]
    rollups = config[PREFIX + "ROLLUP_RETENTION_DAYS"]
    if rollups is not None and (raw is None or rollups < raw):
        kept = "for ever" if raw is None else f"{raw} days"
        raise ConfigError(
            f"{PREFIX}ROLLUP_RETENTION_DAYS ({rollups}) is shorter than "
            f"{PREFIX}RETENTION_DAYS (raw readings kept {kept}): rollups must be "
            "kept at least as long as the readings they summarise"
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
    # Look for it without importing it: only co2logserver.forwarding.account
    # and .client import it.
    if importlib.util.find_spec("sensemapi") is None:
        raise ConfigError(
            "CO2LOGSERVER_OSEM_UPLOAD needs the sensemapi package: "
            "pip install 'sensemapi>=0.5,<0.6'"
        )
    check_regex(config, "OSEM_COL_REGEX", {"type", "quantity", "unit"})
    for key in OSEM_CALLABLE_KEYS:
        if not callable(config[PREFIX + key]):
            raise ConfigError(f"{PREFIX}{key} must be a function")
    value_filter = config[PREFIX + "OSEM_VALUE_FILTER"]
    if value_filter is not None and not callable(value_filter):
        raise ConfigError(f"{PREFIX}OSEM_VALUE_FILTER must be a function or None")


def check_archive_dir(config: dict) -> None:
    """``CO2LOGSERVER_ARCHIVE_DIR``: empty (off), or a directory created if missing
    and proven writable, so the archive command cannot fail at its first day."""
    value = config.get(PREFIX + "ARCHIVE_DIR")
    if value in (None, ""):
        return
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{PREFIX}ARCHIVE_DIR must be a directory path: {value!r}")
    directory = os.fspath(value)
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"{PREFIX}ARCHIVE_DIR: cannot write the archive directory "
            f"{directory!r}: {error.strerror or error}"
        ) from None

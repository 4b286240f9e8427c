"""Configuration: precedence, environment parsing and refusals that name the key."""

from __future__ import annotations

import sys

import pytest

from co2logserver import create_app
from co2logserver.config import parse_env_value
from co2logserver.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("True", True),
        ("true", True),
        ('["my-super-secret-psk"]', ["my-super-secret-psk"]),
        ("['a', 'b']", ["a", "b"]),
        ("42", 42),
        ("1.5", 1.5),
        ("co2.sqlite", "co2.sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("", ""),
    ],
)
def test_env_values_parse_as_json_then_literal_then_text(text, value):
    assert parse_env_value(text) == value


def test_precedence(tmp_path, monkeypatch):
    config_file = tmp_path / "settings.py"
    config_file.write_text(
        'CO2LOGSERVER_NAME = "from-file"\nCO2LOGSERVER_MAX_LIMIT_OF_ROWS = 7\n'
        'CO2LOGSERVER_DB = "file.sqlite"\n'
    )
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", str(config_file))
    monkeypatch.setenv("CO2LOGSERVER_MAX_LIMIT_OF_ROWS", "9")
    monkeypatch.setenv("CO2LOGSERVER_UPLOAD_REQUIRES_AUTH", "True")
    monkeypatch.setenv("CO2LOGSERVER_CHECKSUM_SALTS", '["my-super-secret-psk"]')
    app = create_app({"DB": str(tmp_path / "cli.sqlite")})
    assert app.config["CO2LOGSERVER_NAME"] == "from-file"
    assert app.config["CO2LOGSERVER_MAX_LIMIT_OF_ROWS"] == 9
    assert app.config["CO2LOGSERVER_UPLOAD_REQUIRES_AUTH"] is True
    assert app.config["CO2LOGSERVER_CHECKSUM_SALTS"] == ["my-super-secret-psk"]
    assert app.config["CO2LOGSERVER_DB"].endswith("cli.sqlite")


def test_config_file_of_0_1_2_with_functions(tmp_path, monkeypatch):
    config_file = tmp_path / "old.py"
    config_file.write_text(
        "from co2logserver.utils import *\n"
        "CO2LOGSERVER_TIME_COLS = ['time', 'time_utc']\n"
        "def CO2LOGSERVER_ACCEPT_NEW_COLUMN(col):\n"
        "    return not col.startswith('debug')\n"
    )
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", str(config_file))
    app = create_app({"DB": str(tmp_path / "db.sqlite")})
    client = app.test_client()
    assert client.post("/upload", json={"time_utc": 0, "debug_x": 1}).get_json() == {
        "saved-in-db": 1
    }
    rows = client.get("/download?format=json").get_json()
    assert rows[0]["time_utc"] == "1970-01-01 00:00:00+00:00"
    assert "debug_x" not in rows[0]


def test_sensemap_environment_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSEMAP_EMAIL", "me@example.org")
    monkeypatch.setenv("SENSEMAP_PASSWORD", "pw")
    app = create_app({"DB": str(tmp_path / "db.sqlite")})
    assert app.config["CO2LOGSERVER_OSEM_EMAIL"] == "me@example.org"
    assert app.config["CO2LOGSERVER_OSEM_PASSWORD"] == "pw"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"DB": "mysql://u@h/db"}, "CO2LOGSERVER_DB"),
        ({"DB": ""}, "CO2LOGSERVER_DB"),
        ({"CHECKSUM_SALTS": "my-super-secret-psk"}, "CO2LOGSERVER_CHECKSUM_SALTS"),
        ({"TIME_COLS": "time"}, "CO2LOGSERVER_TIME_COLS"),
        ({"MAX_LIMIT_OF_ROWS": 0}, "CO2LOGSERVER_MAX_LIMIT_OF_ROWS"),
        ({"SQLITE_SYNCHRONOUS": "sometimes"}, "CO2LOGSERVER_SQLITE_SYNCHRONOUS"),
        ({"LOGLEVEL": "LOUD"}, "CO2LOGSERVER_LOGLEVEL"),
        ({"OSEM_MAX_BACKOFF": 0}, "CO2LOGSERVER_OSEM_MAX_BACKOFF"),
        ({"RETRY_AFTER": "soon"}, "CO2LOGSERVER_RETRY_AFTER"),
        ({"SILENT_AFTER": -1}, "CO2LOGSERVER_SILENT_AFTER"),
        ({"OSEM_UPLOAD": True}, "CO2LOGSERVER_OSEM_UPLOAD"),
        (
            {"SALTED_CHECKSUM_HEADER_REGEX": "Content-(?P<algorithm>\\w+"},
            "CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX",
        ),
        (
            {"SALTED_CHECKSUM_HEADER_REGEX": "Content-(\\w+)-Salted"},
            "CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX",
        ),
        (
            {"SALTED_CHECKSUM_HEADER_REGEX": 42},
            "CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX",
        ),
        (
            {"OSEM_UPLOAD": True, "OSEM_EMAIL": "a@b.c"},
            "CO2LOGSERVER_OSEM_PASSWORD",
        ),
        # Forwarding has no fallback for its hooks (#14): None is refused at start.
        (
            {
                "OSEM_UPLOAD": True,
                "OSEM_EMAIL": "a@b.c",
                "OSEM_PASSWORD": "pw",
                "OSEM_UNIT_COVERTER": None,
            },
            "CO2LOGSERVER_OSEM_UNIT_COVERTER",
        ),
        (
            {
                "OSEM_UPLOAD": True,
                "OSEM_EMAIL": "a@b.c",
                "OSEM_PASSWORD": "pw",
                "DEFAULT_LAT": 48.5,
            },
            "CO2LOGSERVER_DEFAULT_LAT",
        ),
        (
            {
                "OSEM_UPLOAD": True,
                "OSEM_EMAIL": "a@b.c",
                "OSEM_PASSWORD": "pw",
                "OSEM_VALUE_FILTER": 3,
            },
            "CO2LOGSERVER_OSEM_VALUE_FILTER",
        ),
    ],
)
def test_unworkable_config_names_the_key(tmp_path, overrides, key):
    settings = {"DB": str(tmp_path / "db.sqlite"), **overrides}
    with pytest.raises(ConfigError) as raised:
        create_app(settings)
    message = str(raised.value)
    assert key in message
    assert "\n" not in message


def test_missing_config_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", str(tmp_path / "missing.py"))
    with pytest.raises(ConfigError, match="CO2LOGSERVER_CONFIG"):
        create_app({"DB": str(tmp_path / "db.sqlite")})


def test_sqlite_url_and_file_path_both_work(tmp_path):
    for db in (str(tmp_path / "a.sqlite"), f"sqlite:///{tmp_path / 'b.sqlite'}"):
        client = create_app({"DB": db}).test_client()
        assert client.post("/upload", json={"x": 1}).get_json() == {"saved-in-db": 1}


def test_importing_has_no_side_effects(tmp_path, monkeypatch):
    import importlib
    import sys

    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m.startswith("co2logserver")]:
        monkeypatch.delitem(sys.modules, name)
    package = importlib.import_module("co2logserver")
    assert "application" not in vars(package)
    assert not list(tmp_path.iterdir())
    application = package.application
    assert application.name == "co2logserver"


def test_misspelled_environment_key_stops_with_closest_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CO2LOGSERVER_UPLOAD_REQUIRE_AUTH", "True")
    with pytest.raises(ConfigError) as error:
        create_app({"DB": str(tmp_path / "db.sqlite")})
    message = str(error.value)
    assert "CO2LOGSERVER_UPLOAD_REQUIRE_AUTH" in message
    assert "did you mean CO2LOGSERVER_UPLOAD_REQUIRES_AUTH?" in message
    assert "\n" not in message


def test_misspelled_config_file_key_stops_helpers_allowed(tmp_path, monkeypatch):
    config = tmp_path / "config.py"
    config.write_text("helper = 1\nHELPER = 2\nCO2LOGSERVER_MAX_ROW = 5\n")
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", str(config))
    with pytest.raises(ConfigError, match="did you mean CO2LOGSERVER_MAX_ROWS"):
        create_app({"DB": str(tmp_path / "db.sqlite")})
    config.write_text("helper = 1\nHELPER = 2\nCO2LOGSERVER_MAX_ROWS = 5\n")
    assert (
        create_app({"DB": str(tmp_path / "db.sqlite")}).config["CO2LOGSERVER_MAX_ROWS"]
        == 5
    )


def test_test_suite_variables_are_not_config_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("CO2LOGSERVER_TEST_PG_URL", "postgresql://x@y/z")
    create_app({"DB": str(tmp_path / "db.sqlite")})


def test_requires_auth_without_salts_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_CHECKSUM_SALTS"):
        create_app({"DB": str(tmp_path / "db.sqlite"), "UPLOAD_REQUIRES_AUTH": True})


def test_salted_checksum_header_regex_from_the_environment(tmp_path, monkeypatch):
    """A text value is compiled case-insensitively; the default is 0.1.2's."""
    default = create_app({"DB": str(tmp_path / "db.sqlite")}).config
    pattern = default["CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX"]
    assert pattern.fullmatch("content-md5-salted")["algorithm"] == "md5"
    monkeypatch.setenv(
        "CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX", r"X-(?P<algorithm>\w+)-Sum"
    )
    config = create_app({"DB": str(tmp_path / "db.sqlite")}).config
    pattern = config["CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX"]
    assert pattern.fullmatch("x-SHA1-sum")["algorithm"] == "SHA1"


def test_forwarding_without_sensemapi_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sensemapi", None)  # as if not installed
    settings = {"OSEM_UPLOAD": True, "OSEM_EMAIL": "a@b.c", "OSEM_PASSWORD": "pw"}
    with pytest.raises(ConfigError, match="needs the sensemapi package"):
        create_app({"DB": str(tmp_path / "db.sqlite"), **settings})

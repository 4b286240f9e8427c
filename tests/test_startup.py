"""A start that cannot work stops in one line; a later database failure is a 503.

Real gunicorn subprocesses (``gunicorn co2logserver``, as the docs say), the real
``python3 -m co2logserver`` command, and a real SQLite file that goes away.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import pytest

from co2logserver import create_app
from co2logserver.errors import ConfigError
from co2logserver.store import get_store
from tests.appserver import control_socket_args

STARTUP_TIMEOUT = 60


def gunicorn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run ``gunicorn co2logserver`` to its end (it must halt by itself)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            "127.0.0.1:0",
            *control_socket_args(),
            *args,
            "co2logserver",
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )


def our_lines(stderr: str) -> list[str]:
    """The lines co2logserver printed (gunicorn's own log lines start with '[')."""
    return [line for line in stderr.splitlines() if not line.startswith("[")]


def bad_config_file(tmp_path) -> str:
    path = tmp_path / "settings.py"
    path.write_text('CO2LOGSERVER_NAME = "x"\nCO2LOGSERVER_MAX_ROWS = (10\n')
    return str(path)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CO2LOGSERVER_MAX_ROWS": "abc"}, ["CO2LOGSERVER_MAX_ROWS", "'abc'"]),
        ({"CO2LOGSERVER_DB": "mysql://x"}, ["CO2LOGSERVER_DB", "mysql"]),
        (
            {"CO2LOGSERVER_DB": "/nonexistent-dir/co2.sqlite"},
            ["CO2LOGSERVER_DB", "/nonexistent-dir", "No such file or directory"],
        ),
        ({"CO2LOGSERVER_CONFIG": "BAD"}, ["configuration", "settings.py", "line 2"]),
        (
            {"CO2LOGSERVER_RETENTION_DAYS": "-3"},
            ["CO2LOGSERVER_RETENTION_DAYS", "-3"],
        ),
    ],
    ids=["bad-number", "mysql", "missing-dir", "config-syntax", "retention"],
)
@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
def test_gunicorn_stops_with_one_line(tmp_path, env, words, preload):
    if env.get("CO2LOGSERVER_CONFIG") == "BAD":
        env = {"CO2LOGSERVER_CONFIG": bad_config_file(tmp_path)}
    env = {"CO2LOGSERVER_DB": str(tmp_path / "db.sqlite"), **env}
    result = gunicorn(env, "-w", "2", *(["--preload"] if preload else []))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = our_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("co2logserver: configuration error: ")
    for word in words:
        assert word in lines[0]
    if not preload:
        assert result.returncode == 3  # gunicorn's "worker failed to boot": halts


def test_create_app_still_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="CO2LOGSERVER_DB.*No such file"):
        create_app({"DB": str(tmp_path / "missing" / "co2.sqlite")})


def test_config_file_syntax_error_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", bad_config_file(tmp_path))
    with pytest.raises(ConfigError) as raised:
        create_app({"DB": str(tmp_path / "db.sqlite")})
    message = str(raised.value)
    assert message.startswith("configuration file ")
    assert "settings.py, line 2" in message
    assert "\n" not in message


def test_config_file_failing_statement_names_its_line(tmp_path, monkeypatch):
    path = tmp_path / "settings.py"
    path.write_text("import os\n\nCO2LOGSERVER_DB = os.environ['NOT_SET_ANYWHERE']\n")
    monkeypatch.setenv("CO2LOGSERVER_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"settings.py, line 3: KeyError"):
        create_app({"DB": str(tmp_path / "db.sqlite")})


@pytest.mark.parametrize("parent", ["missing-dir", "a-file"])
def test_init_db_refuses_an_unwritable_path_in_one_line(tmp_path, parent):
    (tmp_path / "a-file").write_text("not a directory")
    db = tmp_path / parent / "co2.sqlite"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    result = subprocess.run(
        [sys.executable, "-m", "co2logserver", "-f", str(db), "init-db"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "CO2LOGSERVER_DB" in line
    assert str(db) in line
    reason = "No such file or directory" if parent == "missing-dir" else "Not a dir"
    assert reason in line


def test_database_lost_later_is_a_503_and_the_log_names_the_cause(
    tmp_path, build_app, caplog
):
    directory = tmp_path / "data"
    directory.mkdir()
    app = build_app({"DB": str(directory / "co2.sqlite")})
    client = app.test_client()
    assert client.post("/upload", json={"co2": [400]}).status_code == 200
    shutil.rmtree(directory)
    get_store(app).dispose()  # new connections must open the file again
    with caplog.at_level(logging.WARNING, logger="co2logserver.store"):
        read = client.get("/download?format=json")
        write = client.post("/upload", json={"co2": [401]})
    assert read.status_code == write.status_code == 503
    assert read.headers["Retry-After"]
    assert "Nothing was stored" not in read.get_json()["error"]
    assert "Nothing was stored" in write.get_json()["error"]
    assert "unable to open database file" in caplog.text


def init_db(db: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "co2logserver", "init-db"],
        env={**clean, "CO2LOGSERVER_DB": db},
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )


def test_a_file_that_is_no_sqlite_database_refuses_to_start(tmp_path):
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are my notes, not a database\n")
    result = init_db(str(not_a_db))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "CO2LOGSERVER_DB" in line and "is not an SQLite database" in line
    assert not_a_db.read_text().startswith("these are my notes")  # left alone


def test_init_db_on_an_unreachable_postgresql_names_the_cause(tmp_path):
    from tests.servers import free_port

    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    result = init_db(url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: CO2LOGSERVER_DB: The database is unavailable")
    assert "127.0.0.1" in last  # the driver's words: where it could not connect

"""The command line: 0.1.2's options, a clear line for a broken config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from co2logserver.cli import main
from tests.servers import free_port


def test_help_lists_the_0_1_2_options():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "-b, --bind",
        "-p, --port",
        "-f, --dbfile",
        "-c, --config",
        "-v, --verbose",
        "-d, --debug",
        "-t, --threaded",
    ):
        assert option in result.output


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_invalid_port_is_a_usage_error(port):
    assert CliRunner().invoke(main, ["-p", port]).exit_code == 2


def test_missing_config_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["-c", str(tmp_path / "missing.py")])
    assert result.exit_code == 2


def test_broken_config_is_one_line_naming_the_key(tmp_path):
    config_file = tmp_path / "bad.py"
    config_file.write_text('CO2LOGSERVER_DB = "oracle://x"\n')
    result = CliRunner().invoke(main, ["-c", str(config_file), "init-db"])
    assert result.exit_code == 1
    assert "CO2LOGSERVER_DB" in result.output
    assert "Traceback" not in result.output


def test_init_db_creates_the_file(tmp_path):
    db = tmp_path / "new.sqlite"
    result = CliRunner().invoke(main, ["-f", str(db), "init-db"])
    assert result.exit_code == 0, result.output
    assert db.exists()


def test_dev_server_serves_over_http(tmp_path):
    port = free_port()
    db = tmp_path / "served.sqlite"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "co2logserver",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-f",
            str(db),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(
                    f"{url}/upload",
                    data=b'{"time_utc":[43,23],"co2":[1223,2351]}',
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.read() == b'{"saved-in-db":2}\n'
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(f"{url}/download?format=json", timeout=5) as r:
            assert b"2351" in r.read()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert db.exists()


def test_gunicorn_halts_on_a_broken_config(tmp_path):
    """A bad config stops gunicorn (exit 3) instead of restarting workers forever."""
    config_file = tmp_path / "bad.py"
    config_file.write_text('CO2LOGSERVER_DB = "mysql://x/y"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{free_port()}",
            "co2logserver",
        ],
        env={**os.environ, "CO2LOGSERVER_CONFIG": str(config_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert (
        "co2logserver: configuration error: CO2LOGSERVER_DB: unsupported database"
        in result.stderr
    )


def test_gunicorn_serves_the_module_application(tmp_path):
    """``gunicorn co2logserver`` with CO2LOGSERVER_CONFIG, as the README says."""
    config_file = tmp_path / "settings.py"
    config_file.write_text(f'CO2LOGSERVER_DB = "{tmp_path / "g.sqlite"}"\n')
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "co2logserver",
        ],
        env={**os.environ, "CO2LOGSERVER_CONFIG": str(config_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/upload",
                    data=b"time_utc,co2\n43,1223\n23,2351",
                    headers={"Content-Type": "text/csv"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.read() == b'{"saved-in-db":2}\n'
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert (tmp_path / "g.sqlite").exists()


def test_dev_server_logs_have_no_ansi_escapes_off_a_terminal(tmp_path):
    """Its log goes to a pipe here, as to a file or the journal: plain text."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "co2logserver", "-p", str(port), "-f", "d.sqlite"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/no-such-page", timeout=5
                )
            except urllib.error.HTTPError as error:  # the 404 werkzeug logs in colour
                assert error.code == 404
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert "GET /no-such-page HTTP/1.1" in output
    assert "\x1b[" not in output

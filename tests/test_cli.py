"""The command line: 0.1.2's options, a clear line for a broken config."""

from __future__ import annotations

import subprocess
import sys
import time
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

"""docs/mqtt.rst's "Try it locally, from zero" runs as written.

The Mosquitto configuration, the subscriber command and the ``mosquitto_pub`` line
are taken from the page itself; only the port 1883 is replaced by a free one, so
that the test never meets a broker already running on this machine.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from co2logserver import create_app
from co2logserver.store import get_store
from tests.servers import ForegroundServer, find_binary, free_port

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "mqtt.rst").read_text(encoding="utf-8")
SUID = "123e4567-e89b-12d3-a456-426655440000"


def recipe() -> str:
    """The text of the recipe section."""
    start = PAGE.index("Try it locally, from zero")
    return PAGE[start : PAGE.index("\nTopics\n", start)]


def code_blocks(text: str) -> list[str]:
    """The code blocks of ``text``, dedented."""
    blocks = re.findall(r"\.\. code-block:: \w+\n\n((?:   .*\n|\n)+)", text)
    return [re.sub(r"^   ", "", block, flags=re.M).strip() for block in blocks]


def test_recipe_names_the_debian_package_of_mosquitto_pub():
    assert "``mosquitto_pub`` is in the package ``mosquitto-clients``" in recipe()
    assert "apt install mosquitto mosquitto-clients" in code_blocks(recipe())[0]


def test_recipe_stores_a_published_reading(tmp_path):
    install, config, start, publish = code_blocks(recipe())
    assert config.splitlines() == ["listener 1883 127.0.0.1", "allow_anonymous true"]
    port = free_port()
    conf = tmp_path / "mosquitto-local.conf"
    conf.write_text(config.replace("1883", str(port)) + "\n")
    mosquitto = find_binary("mosquitto", "mosquitto")
    assert start.splitlines()[0] == "mosquitto -c mosquitto-local.conf"
    broker = ForegroundServer("mosquitto", [mosquitto, "-c", str(conf)], port, tmp_path)
    subscriber_command = shlex.split(start.splitlines()[1].partition("#")[0])
    assert subscriber_command == ["python3", "-m", "co2logserver", "mqtt"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO2LOGSERVER_")}
    env["CO2LOGSERVER_MQTT_URL"] = f"mqtt://127.0.0.1:{port}"
    broker.start()
    subscriber = subprocess.Popen(
        [sys.executable, *subscriber_command[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "mqtt: subscribed to" in subscriber.stdout.readline()
        find_binary("mosquitto_pub", "mosquitto-clients")
        command = publish.split("\ncurl")[0].replace("-p 1883", f"-p {port}")
        subprocess.run(["bash", "-c", command], check=True, timeout=30)
        app = create_app({"DB": str(tmp_path / "co2.sqlite")})
        client = app.test_client()
        deadline = time.monotonic() + 20
        while True:
            answer = client.get(f"/v1/sensors/{SUID}/readings")
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer.status_code == 200, answer.data
        (reading,) = answer.get_json()["readings"]
        assert (reading["type"], reading["value"]) == ("PM10", 12.5)
        assert abs(reading["timestamp"] - time.time()) < 600
        get_store(app).dispose()
    finally:
        subscriber.terminate()
        subscriber.wait(timeout=15)
        subscriber.stdout.close()
        broker.stop()


@pytest.mark.parametrize("line", ["python3 -m co2logserver mqtt"])
def test_recipe_command_is_the_cli_command(line):
    from click.testing import CliRunner

    from co2logserver.cli import main

    assert "mqtt" in main.commands
    assert CliRunner().invoke(main, ["mqtt", "--help"]).exit_code == 0
    assert line in recipe()

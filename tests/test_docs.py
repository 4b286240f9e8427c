"""The documentation says what the code does: generated pages are current."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from co2logserver.config import CONFIG_KEYS

ROOT = Path(__file__).resolve().parent.parent
GENERATE = runpy.run_path(str(ROOT / "docs" / "generate.py"))


@pytest.mark.parametrize("page", sorted(GENERATE["PAGES"]))
def test_generated_pages_are_current(page):
    committed = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert committed == GENERATE["PAGES"][page](), (
        f"docs/{page} is stale: run python docs/generate.py"
    )


def test_every_key_is_documented_with_a_reason():
    source = (ROOT / "co2logserver" / "config_default.py").read_text(encoding="utf-8")
    documented = {name: text for name, _default, text in GENERATE["key_docs"](source)}
    assert set(documented) == set(CONFIG_KEYS)
    undocumented = [name for name, text in documented.items() if len(text) < 10]
    assert not undocumented


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(pip install [^\n]+)\n```", readme)
    assert commands[0] == "pip install '.[all]' && python3 -m co2logserver"
    test_command = commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'run_tests() {{ {test_command} "$@"; }}' in ci


#: What a visible error box in built HTML looks like: docutils' system messages
#: (an unknown directive or role, a broken reference) and Furo's own complaint.
ERROR_BOXES = (
    'class="system-message',
    "System Message:",
    "Adding a table of contents in Furo-based documentation is unnecessary",
)


@pytest.fixture(scope="module")
def built_html(tmp_path_factory) -> Path:
    """The HTML docs, built without -W and with ``keep_warnings``, so that every
    docutils message shows in the page as a box instead of stopping the build."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("html")
    subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-q", "-D", "keep_warnings=1"),
            *("-b", "html", str(ROOT / "docs"), str(out)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_built_html_has_no_error_boxes(built_html):
    pages = sorted(built_html.glob("*.html"))
    assert len(pages) > 5
    boxes = [
        f"{page.name}: {box}"
        for page in pages
        for box in ERROR_BOXES
        if box in page.read_text(encoding="utf-8")
    ]
    assert not boxes


def test_no_contents_directive_furo_renders_as_an_error():
    """Furo shows ``.. contents::`` as a red error box: its sidebar is the contents."""
    uses = [
        page.name
        for page in (ROOT / "docs").glob("*.rst")
        if re.search(r"^\s*\.\. contents::", page.read_text(encoding="utf-8"), re.M)
    ]
    assert not uses


def readme_upload_body() -> str:
    """The JSON body of the README's first ``curl … /upload``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"--data '(\{[^']*\})' http://127.0.0.1:8080/upload", readme)[1]


def test_readme_upload_example_has_a_time_column(client):
    body = readme_upload_body()
    assert '"time"' in body
    assert client.post(
        "/upload", data=body, content_type="application/json"
    ).get_json() == {"saved-in-db": 2}
    rows = client.get("/download?format=json").get_json()
    assert [row["time"] for row in rows] == [
        "2023-11-14 22:13:20+00:00",
        "2023-11-14 22:14:20+00:00",
    ]


def test_readme_says_which_routes_store_a_resend_once(client):
    """Resending: /upload stores twice (as 0.1.2), the OpenSmog API once."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "resending a buffer there stores nothing twice" in readme
    assert "posting the same body twice stores its rows twice" in readme
    for _ in range(2):
        client.post(
            "/upload", data=readme_upload_body(), content_type="application/json"
        )
    assert len(client.get("/download?format=json").get_json()) == 4
    suid = "123e4567-e89b-12d3-a456-426655440000"
    body = b'[{"timestamp": 1700000000, "readings": {"PM10": 1.0}}]'
    for _ in range(2):
        assert (
            client.post(f"/rogue/v1/sensors/{suid}/readings", data=body).status_code
            == 200
        )
    assert client.get(f"/v1/sensors/{suid}").get_json()["reading_count"] == 1


def test_deployment_installs_this_tree_not_the_old_release():
    """``pip install 'co2logserver[all]'`` from the index would install 0.1.2."""
    page = (ROOT / "docs" / "deployment.rst").read_text(encoding="utf-8")
    commands = [line.strip() for line in page.splitlines() if "pip install" in line]
    installs = [c for c in commands if c.startswith("/opt/co2logserver/bin/pip")]
    assert installs
    assert "pip install '/opt/co2logserver-src[all]'" in installs[0]
    for text in [page, (ROOT / "docs" / "mqtt.rst").read_text(encoding="utf-8")]:
        assert not re.search(r"^\s+\S*pip install 'co2logserver\[", text, re.M)

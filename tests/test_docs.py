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

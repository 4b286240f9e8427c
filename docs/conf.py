"""Sphinx configuration of the co2logserver documentation."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

project = "co2logserver"
author = "the co2logserver developers"
release = runpy.run_path(str(ROOT / "co2logserver" / "version.py"))["__version__"]
extensions = ["myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples"]
html_theme = "furo"
html_static_path = ["_static"]
html_title = f"co2logserver {release}"
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]

"""Packaging of co2logserver: the metadata is in pyproject.toml's ``[project]``.

Kept, as a bare ``setup()``, for the tools and habits that look for a setup.py;
``pip install .`` and ``pip install -e '.[all,test]'`` read pyproject.toml either way.
"""

from setuptools import setup

setup()

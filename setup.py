"""Packaging of co2logserver (metadata and tool settings live in pyproject.toml)."""

import runpy

from setuptools import find_packages, setup

version = runpy.run_path("co2logserver/version.py")["__version__"]

extras = {
    "msgpack": ["msgpack>=1.0"],
    "opensensemap": ["sensemapi>=0.5"],
    "postgres": ["psycopg[binary]>=3.3"],
    "redis": ["redis>=4.5"],
    "mqtt": ["paho-mqtt>=2.0"],
    "gunicorn": ["gunicorn>=21"],
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})
extras["test"] = [
    "pytest>=7.4",
    "hypothesis>=6.80",
    "schemathesis>=4.0",
    "requests>=2.28",
    "playwright>=1.40",
    "ruff>=0.4",
    "sphinx>=7",
    "furo>=2023.9.10",
    "myst-parser>=2",
]

setup(
    name="co2logserver",
    version=version,
    description="Data-logging server for environmental sensors",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="GPLv3",
    python_requires=">=3.11",
    packages=find_packages(include=["co2logserver", "co2logserver.*"]),
    include_package_data=True,
    package_data={"co2logserver": ["templates/*.html", "static/*", "static/**/*"]},
    install_requires=[
        "flask>=3.0",
        "sqlalchemy>=2.0",
        "click>=8.1",
        "flask-limiter>=3.5",
        "prometheus_client>=0.17",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["co2logserver = co2logserver.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
        "Programming Language :: Python :: 3",
        "Framework :: Flask",
        "Topic :: Scientific/Engineering :: Atmospheric Science",
    ],
)

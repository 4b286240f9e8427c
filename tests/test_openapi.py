"""``/openapi.json`` describes the app's real routes, no more and no less."""

from __future__ import annotations

import re

import schemathesis

from co2logserver.web import openapi
from co2logserver.web.openapi.core import ERROR_REF
from co2logserver.web.openapi.owners import HTML_ERROR

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def app_routes(app) -> dict[str, set[str]]:
    """Every route of ``app`` except static, in OpenAPI path syntax, with methods."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(rule.methods - IGNORED_METHODS)
    return routes


def documented_routes(doc) -> dict[str, set[str]]:
    """Every path of the document with its (upper-case) methods."""
    return {path: {m.upper() for m in item} for path, item in doc["paths"].items()}


def test_served_document_is_the_module_document(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.get_json() == openapi.document()


def test_document_loads_in_schemathesis_with_every_operation(app):
    schema = schemathesis.openapi.from_dict(openapi.document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(m) for m in app_routes(app).values())


def test_owner_forms_answer_html_errors():
    doc = openapi.document()
    owners = [
        operation
        for item in doc["paths"].values()
        for operation in item.values()
        if "owners" in operation["tags"]
    ]
    assert len(owners) == 10
    for operation in owners:
        assert operation["responses"]["400"] == HTML_ERROR


def test_every_route_is_documented_with_its_methods(app):
    assert documented_routes(openapi.document()) == app_routes(app)


def test_every_error_answer_is_the_json_error_schema():
    doc = openapi.document()
    error = doc["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"] == ERROR_REF
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if "owners" in operation["tags"]:
                continue  # forms for people: their errors are HTML pages
            statuses = [s for s in operation["responses"] if int(s) >= 400]
            assert {"500", "503"} <= set(statuses), (method, path)
            for status in statuses:
                assert operation["responses"][status] == {
                    "$ref": "#/components/responses/Error"
                }, (method, path, status)

"""The owners' pages in the OpenAPI document (SPEC §12), and the public map.

HTML pages and forms, read by people: their errors are the page again, not the
API's JSON error, so they describe their answers apart from :mod:`~.parts`'
``responses``. Apart from the API routes so that a page added to the owners'
blueprint is documented in one place.
"""

from __future__ import annotations

from typing import Any

from co2logserver.web.openapi.parts import SUID, page

#: Error pages of the owners' forms: HTML, not the API's JSON (they are read by
#: people, in the page they posted from).
HTML_ERROR = {"description": "The page again, saying what was wrong (HTML)."}
OWNER_ERRORS = ("400", "401", "403", "404", "429", "502", "503")


def owner_page(summary: str, form: dict[str, Any] | None = None, get: bool = True):
    """An owners' page (``tags: owners``): GET shows it, POST sends its form.

    A form needs its CSRF token (400 without); a page that needs a signed-in owner
    answers 302 to ``/signin``.
    """
    answers = {
        "200": {
            "description": "The page (HTML).",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        "302": {"description": "Done, or sign in first: go to Location."},
        **{status: HTML_ERROR for status in OWNER_ERRORS},
        "500": HTML_ERROR,
    }
    item: dict[str, Any] = {}
    if get:
        item["get"] = {"summary": summary, "tags": ["owners"], "responses": answers}
    if form is not None:
        fields = {"csrf_token": {"type": "string"}, **form}
        item["post"] = {
            "summary": summary + " (form)",
            "tags": ["owners"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": fields}
                    }
                },
            },
            "responses": answers,
        }
    return item


def owner_paths() -> dict[str, Any]:
    """The owners' pages of SPEC §12, and the public map."""
    text = {"type": "string"}
    account = {"username": text, "password": text}
    sensor = owner_page("An owned sensor's settings.", {"action": text})
    for operation in sensor.values():
        operation["parameters"] = [SUID]
    return {
        "/map": page("Map of the sensors with a public location (HTML)."),
        "/signup": owner_page(
            "Create an owner account.", {**account, "invitation": text}
        ),
        "/signin": owner_page("Sign in.", account),
        "/signout": owner_page("Sign out.", {}, get=False),
        "/claim": owner_page("Claim a sensor.", {"suid": text, "code": text}),
        "/my/sensors": owner_page("The owner's sensors and their status."),
        "/my/sensors/{suid}": sensor,
    }

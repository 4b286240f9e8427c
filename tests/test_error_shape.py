"""Every API error has one shape: {"error": "..."} with the right status."""

from __future__ import annotations

import pytest


def assert_canonical_error(response, status: int) -> str:
    """The response is JSON ``{"error": <non-empty text>}`` with ``status``."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/no/such/page", {}, 404),
        ("get", "/upload", {}, 405),
        ("delete", "/download", {}, 405),
        ("post", "/upload", {"data": b"x", "content_type": "text/plain"}, 415),
        ("post", "/upload", {"data": b"{", "content_type": "application/json"}, 400),
        ("get", "/download?format=pdf", {}, 400),
        ("put", "/v1/sensors/not-a-uuid", {"json": {}}, 400),
        ("get", "/v1/sensors/123e4567-e89b-12d3-a456-426655440000", {}, 404),
        (
            "post",
            "/rogue/v1/sensors/123e4567-e89b-12d3-a456-426655440000/readings",
            {"data": b"[]"},
            400,
        ),
    ],
)
def test_error_shape(client, method, path, kwargs, status):
    assert_canonical_error(getattr(client, method)(path, **kwargs), status)


def test_body_too_large_is_413_json(make_app):
    client = make_app(MAX_CONTENT_LENGTH=100).test_client()
    response = client.post(
        "/upload",
        data=b'{"x": [' + b"1," * 100 + b"1]}",
        content_type="application/json",
    )
    assert_canonical_error(response, 413)


@pytest.mark.parametrize(("setting", "header"), [(9, "9"), (2.5, "3")])
def test_storage_unavailable_is_503_with_retry_after(
    make_app, tmp_path, setting, header
):
    """The store says "away, retry in n s"; the web answers 503 and Retry-After
    (whole seconds, rounded up), and a write adds that nothing was stored."""
    (tmp_path / "dir").mkdir()
    app = make_app(
        DB=str(tmp_path / "dir" / "db.sqlite"), SPOOL_MAX_BYTES=0, RETRY_AFTER=setting
    )
    (tmp_path / "dir").rmdir()  # lost after the start (a missing one stops it)
    client = app.test_client()
    response = client.post("/upload", json={"x": 1})
    message = assert_canonical_error(response, 503)
    assert message == (
        "The database is unavailable right now; retry later. Nothing was stored."
    )
    assert response.headers["Retry-After"] == header
    response = client.get("/download")
    message = assert_canonical_error(response, 503)
    assert message == "The database is unavailable right now; retry later."
    assert response.headers["Retry-After"] == header


def test_the_stores_error_without_advice_has_no_retry_after(make_app):
    """``retry_after=None``: a 503 in the one shape, and no Retry-After at all."""
    from co2logserver.store import StorageUnavailable

    app = make_app()

    @app.get("/test-outage")
    def outage():
        raise StorageUnavailable("away for a while", retry_after=None)

    response = app.test_client().get("/test-outage")
    assert assert_canonical_error(response, 503) == "away for a while"
    assert "Retry-After" not in response.headers

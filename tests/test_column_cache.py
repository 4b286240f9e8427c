"""A refused upload must not poison the cached columns (#11).

The refused upload adds a column inside a transaction that rolls back; the worker's
cache must not keep it, or every later upload of that column fails.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from co2logserver.store import get_store


def upload(client, document: dict):
    return client.post("/upload", json=document)


def stored(app, column: str) -> list:
    with get_store(app).engine.connect() as conn:
        names = [c["name"] for c in inspect(conn).get_columns("data")]
        if column not in names:
            return []
        rows = conn.execute(
            text(f'SELECT "{column}" FROM data WHERE "{column}" IS NOT NULL')
        )
        return [row[0] for row in rows]


def test_a_refused_upload_leaves_no_phantom_column(any_db_app):
    app = any_db_app()
    client = app.test_client()
    assert upload(client, {"co2": 400}).status_code == 200
    refused = upload(client, {"newcol": 1, "co2": "text"})
    assert refused.status_code == 400
    assert "co2" in refused.json["error"]
    assert stored(app, "newcol") == []
    for value in (5, 6):
        response = upload(client, {"newcol": value})
        assert response.status_code == 200, response.json
    assert sorted(stored(app, "newcol")) == [5, 6]


@pytest.mark.parametrize("statement", ["SELECT nothing FROM nowhere"])
def test_a_wrong_query_is_not_reported_as_an_outage(app, statement):
    store = get_store(app)
    with pytest.raises(Exception) as raised, store.transaction() as conn:
        conn.exec_driver_sql(statement)
    assert "unavailable" not in str(raised.value).lower()
    assert not store.is_outage(raised.value)

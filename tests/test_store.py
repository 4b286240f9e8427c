"""The store under workers that start together."""

from __future__ import annotations

import threading

import pytest


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_workers_starting_together_create_the_schema_once(
    request, build_app, db_path, backend
):
    """Four fresh workers' first requests race to create the tables: all succeed."""
    db = db_path if backend == "sqlite" else request.getfixturevalue("pg_database_url")
    clients = [build_app({"DB": db}).test_client() for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    statuses = []

    def first_request(client, index):
        barrier.wait(timeout=10)
        response = client.post("/upload", json={"worker": index, f"col_{index}": 1})
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=first_request, args=(client, i))
        for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 4
    rows = clients[0].get("/download?format=json&cols=worker").get_json()
    assert sorted(row["worker"] for row in rows) == [0, 1, 2, 3]

"""The store under workers that start together."""

from __future__ import annotations

import threading

import pytest

from tests.processes import in_a_forked_child, open_files


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


def test_no_sqlite_connection_crosses_a_fork(build_app, db_path):
    """A store that has used its database (a preloaded master running retention
    or forwarding, say) closes its pooled connections before fork(): the child
    starts with no SQLite file open, and both sides use the database after."""
    from co2logserver.store import get_store

    app = build_app({"DB": db_path})
    assert app.test_client().post("/upload", json={"co2": [1]}).status_code == 200
    assert open_files(db_path)  # pooled, open

    def child() -> list[int]:
        inherited = len(open_files(db_path))
        status = app.test_client().post("/upload", json={"co2": [2]}).status_code
        return [inherited, status]

    assert in_a_forked_child(child)[1] == [0, 200]
    assert app.test_client().post("/upload", json={"co2": [3]}).status_code == 200
    with get_store(app).reading() as conn:
        rows = conn.exec_driver_sql(f"SELECT count(*) FROM {get_store(app).data.name}")
        assert rows.scalar_one() == 3

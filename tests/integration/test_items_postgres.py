"""Items on real PostgreSQL with the Redis read cache."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from heliox.api.deps import DB
from heliox.app import create_app
from heliox.core.db import Database, create_db_engine
from tests.helpers import make_settings
from tests.servers import PostgresServer, RedisServer


def _db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_items_are_stored_in_postgres(
    client: TestClient, postgres_server: PostgresServer, database_url: str
) -> None:
    created = client.post("/api/v1/items", json={"name": "widget", "description": "blue"})
    assert created.status_code == 201
    item = created.json()
    rows = postgres_server.execute(
        f"SELECT id, name, description FROM items WHERE id = {int(item['id'])}",
        dbname=_db_name(database_url),
    )
    assert rows == [(item["id"], "widget", "blue")]


def test_crud_and_pagination(client: TestClient) -> None:
    ids = [client.post("/api/v1/items", json={"name": f"n{i}"}).json()["id"] for i in range(25)]
    first = client.get("/api/v1/items").json()
    assert (first["total"], first["offset"], first["limit"], len(first["items"])) == (25, 0, 20, 20)
    last = client.get("/api/v1/items", params={"offset": 20, "limit": 20}).json()
    assert [i["id"] for i in last["items"]] == ids[20:]
    assert (
        client.patch(f"/api/v1/items/{ids[0]}", json={"name": "renamed"}).json()["name"]
        == "renamed"
    )
    assert client.delete(f"/api/v1/items/{ids[1]}").status_code == 204
    assert client.get(f"/api/v1/items/{ids[1]}").status_code == 404
    assert client.get("/api/v1/items").json()["total"] == 24


def test_reads_are_cached_and_writes_invalidate(
    client: TestClient,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    database_url: str,
) -> None:
    item_id = client.post("/api/v1/items", json={"name": "cached"}).json()["id"]
    first = client.get(f"/api/v1/items/{item_id}")
    assert first.headers["x-cache"] == "miss"
    second = client.get(f"/api/v1/items/{item_id}")
    assert second.headers["x-cache"] == "hit"
    assert second.json() == first.json()
    assert any(key.endswith(f":item:{item_id}") for key in redis_server.keys("heliox:items:*"))

    # A change made behind the service's back is not seen while the entry is cached...
    postgres_server.execute(
        f"UPDATE items SET name = 'sneaky' WHERE id = {item_id}", dbname=_db_name(database_url)
    )
    assert client.get(f"/api/v1/items/{item_id}").json()["name"] == "cached"
    # ...and a write through the API invalidates item and list entries at once.
    assert client.get("/api/v1/items").headers["x-cache"] == "miss"
    assert client.get("/api/v1/items").headers["x-cache"] == "hit"
    client.patch(f"/api/v1/items/{item_id}", json={"description": "new"})
    fresh = client.get(f"/api/v1/items/{item_id}")
    assert fresh.headers["x-cache"] == "miss"
    assert fresh.json()["name"] == "sneaky"
    assert fresh.json()["description"] == "new"
    listed = client.get("/api/v1/items")
    assert listed.headers["x-cache"] == "miss"
    assert listed.json()["items"][0]["description"] == "new"
    client.delete(f"/api/v1/items/{item_id}")
    assert client.get(f"/api/v1/items/{item_id}").status_code == 404


def test_health_db_on_postgres(client: TestClient) -> None:
    assert client.get("/health/db").json()["database"] == "connected"


def test_metrics_report_the_pool(client: TestClient) -> None:
    client.get("/api/v1/items")
    text = client.get("/metrics").text
    assert "heliox_db_pool_size 5.0" in text
    assert "heliox_db_pool_checked_out 0.0" in text


def test_nul_characters_are_refused_with_422(client: TestClient) -> None:
    # PostgreSQL text cannot hold U+0000; the driver's error used to surface as a 500.
    for body in ({"name": "a\u0000b"}, {"name": "a", "description": "b\u0000"}):
        response = client.post("/api/v1/items", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
    item_id = client.post("/api/v1/items", json={"name": "ok"}).json()["id"]
    patched = client.patch(f"/api/v1/items/{item_id}", json={"description": "\u0000"})
    assert patched.status_code == 422, patched.text


def test_values_postgres_refuses_are_422_not_500(database_url: str) -> None:
    app = create_app(make_settings(database_url=database_url, env="production"))

    @app.get("/cast")
    async def cast(db: DB) -> None:
        await db.run(lambda s: s.execute(text("SELECT CAST('not-a-number' AS integer)")))

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/cast")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert "not-a-number" not in response.text


def test_reads_run_in_autocommit_and_writes_in_one_transaction(database_url: str) -> None:
    """``Database.read`` gives each statement its own transaction (no BEGIN/COMMIT round trips);
    ``Database.run`` one transaction for the unit of work; and the pool's one connection, used
    by a read first, is back in transaction mode for the write (autocommit does not leak)."""
    settings = make_settings(
        database_url=database_url, env="production", db_pool_size=1, db_max_overflow=0
    )
    db = Database(create_db_engine(settings), request_timeout=5)

    def two_clock_readings(connection: Connection) -> tuple[object, object]:
        first = connection.scalar(text("SELECT now()"))
        connection.execute(text("SELECT pg_sleep(0.02)"))
        return first, connection.scalar(text("SELECT now()"))

    async def both() -> tuple[tuple[object, object], tuple[object, object]]:
        read = await db.read(two_clock_readings)
        written = await db.run(lambda session: two_clock_readings(session.connection()))
        return read, written

    try:
        (read_first, read_second), (run_first, run_second) = asyncio.run(both())
    finally:
        db.dispose()
    assert read_first != read_second  # now() is the transaction's start: one per statement
    assert run_first == run_second  # one transaction

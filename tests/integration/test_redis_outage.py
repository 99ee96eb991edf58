"""Redis stopped or hanging: reads fall back to the database, nothing returns 500."""

from __future__ import annotations

import time

from tests.helpers import client_for, make_settings
from tests.servers import RedisServer


def test_stopped_redis_falls_back_to_the_database(
    database_url: str, redis_url: str, redis_server: RedisServer
) -> None:
    settings = make_settings(
        database_url=database_url, redis_url=redis_url, redis_backoff_seconds=0.5
    )
    with client_for(settings) as client:
        item_id = client.post("/api/v1/items", json={"name": "before"}).json()["id"]
        client.get(f"/api/v1/items/{item_id}")
        assert client.get(f"/api/v1/items/{item_id}").headers["x-cache"] == "hit"

        redis_server.stop()
        try:
            read = client.get(f"/api/v1/items/{item_id}")
            assert read.status_code == 200
            assert read.headers["x-cache"] == "miss"
            assert read.json()["name"] == "before"
            assert client.get("/api/v1/items").status_code == 200
            # Writes work too (their invalidation fails; reads bypass the cache until it is done).
            changed = client.patch(f"/api/v1/items/{item_id}", json={"name": "during"})
            assert changed.status_code == 200
            assert client.get(f"/api/v1/items/{item_id}").json()["name"] == "during"
            created = client.post("/api/v1/items", json={"name": "new"})
            assert created.status_code == 201
        finally:
            redis_server.start()

        # Back by itself, after the breaker's backoff.
        time.sleep(0.6)
        client.get(f"/api/v1/items/{item_id}")
        again = client.get(f"/api/v1/items/{item_id}")
        assert again.headers["x-cache"] == "hit"
        assert again.json()["name"] == "during"


def test_hanging_redis_costs_a_bounded_delay(
    database_url: str, redis_url: str, redis_server: RedisServer
) -> None:
    settings = make_settings(
        database_url=database_url, redis_url=redis_url, redis_socket_timeout=0.3,
        redis_backoff_seconds=5,
    )  # fmt: skip
    with client_for(settings) as client:
        item_id = client.post("/api/v1/items", json={"name": "x"}).json()["id"]
        client.get(f"/api/v1/items/{item_id}")
        redis_server.freeze()  # accepts bytes, never answers
        try:
            started = time.monotonic()
            first = client.get(f"/api/v1/items/{item_id}")
            first_took = time.monotonic() - started
            assert first.status_code == 200
            assert first_took < 2.0  # one socket timeout (the rate limit call), not a hang
            started = time.monotonic()
            statuses = {client.get(f"/api/v1/items/{item_id}").status_code for _ in range(20)}
            # Breaker open: Redis is skipped, no timeouts paid.
            assert statuses == {200}
            assert time.monotonic() - started < 2.0
        finally:
            redis_server.thaw()


def test_write_during_a_redis_hang_never_leaves_a_stale_read(
    database_url: str, redis_url: str, redis_server: RedisServer
) -> None:
    """Frozen Redis keeps its data: the pre-write entry must not be served once it answers."""
    settings = make_settings(
        database_url=database_url, redis_url=redis_url, redis_socket_timeout=0.3,
        redis_backoff_seconds=1.5, rate_limit_enabled=False,
    )  # fmt: skip
    with client_for(settings) as client:
        item_id = client.post("/api/v1/items", json={"name": "before"}).json()["id"]
        client.get(f"/api/v1/items/{item_id}")
        assert client.get(f"/api/v1/items/{item_id}").headers["x-cache"] == "hit"

        redis_server.freeze()
        try:
            assert client.get(f"/api/v1/items/{item_id}").headers["x-cache"] == "miss"  # breaker
            changed = client.patch(f"/api/v1/items/{item_id}", json={"name": "during"})
            assert changed.status_code == 200
        finally:
            redis_server.thaw()
        # Redis answers again; the breaker is still open, then closes after its backoff.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            read = client.get(f"/api/v1/items/{item_id}")
            assert read.json()["name"] == "during", read.headers["x-cache"]
            time.sleep(0.1)
        assert client.get(f"/api/v1/items/{item_id}").headers["x-cache"] == "hit"

        # A write while the breaker is open but Redis is back: its bump goes through at once.
        redis_server.freeze()
        try:
            client.get(f"/api/v1/items/{item_id}")  # opens the breaker
        finally:
            redis_server.thaw()
        client.patch(f"/api/v1/items/{item_id}", json={"name": "after"})
        for _ in range(3):
            assert client.get(f"/api/v1/items/{item_id}").json()["name"] == "after"

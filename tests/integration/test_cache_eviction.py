"""An evicted cache generation never brings back a value cached before a write.

Every cached read is keyed by its namespace's generation (``heliox:items:gen``), which every
write bumps. Redis may lose that key (an eviction under memory pressure, a user's own Redis with
``allkeys-*``); the generation that follows must differ from every earlier one, or entries
cached under an old generation are served again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from tests.helpers import client_for, make_settings

GENERATION = "heliox:items:gen"


@pytest.fixture
def direct(redis_url: str) -> Iterator[redis.Redis]:
    """The test's own connection to the Redis the app uses."""
    connection = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield connection
    connection.close()


def _name(client: TestClient, item_id: int) -> tuple[str, str]:
    response = client.get(f"/api/v1/items/{item_id}")
    assert response.status_code == 200, response.text
    return response.json()["name"], response.headers["x-cache"]


def test_generation_deleted_before_a_write(client: TestClient, direct: redis.Redis) -> None:
    item_id = client.post("/api/v1/items", json={"name": "before"}).json()["id"]
    _name(client, item_id)
    assert _name(client, item_id) == ("before", "hit")

    assert direct.delete(GENERATION) == 1  # as an eviction would
    assert client.patch(f"/api/v1/items/{item_id}", json={"name": "after"}).status_code == 200
    assert _name(client, item_id) == ("after", "miss")
    assert _name(client, item_id) == ("after", "hit")  # and the cache still works


def test_generation_deleted_after_a_write(client: TestClient, direct: redis.Redis) -> None:
    assert client.get("/api/v1/items").json()["total"] == 0  # cached before any write
    client.post("/api/v1/items", json={"name": "first"})
    assert client.get("/api/v1/items").json()["total"] == 1
    assert client.get("/api/v1/items").headers["x-cache"] == "hit"

    assert direct.delete(GENERATION) == 1
    page = client.get("/api/v1/items")
    assert page.json()["total"] == 1, "the page cached before the write came back"
    assert page.headers["x-cache"] == "miss"


def _idle(direct: redis.Redis, key: str) -> int:
    return int(direct.object("idletime", key))  # type: ignore[arg-type]


def test_generation_evicted_by_memory_pressure_under_allkeys_lru(
    client: TestClient, direct: redis.Redis
) -> None:
    """A real eviction, under the policy the chart used to ship (and a user's Redis may have).

    Made deterministic with Redis's LRU clock (one-second resolution): the generation is the
    least recently used key, filler values the next, the cached entry the most recent; every
    key is sampled, so eviction takes the generation first and fillers after it.
    """
    item_id = client.post("/api/v1/items", json={"name": "before"}).json()["id"]
    _name(client, item_id)  # cached; the generation and the entry are touched now
    entries = [k for k in direct.keys("heliox:items:*") if k != GENERATION.encode()]
    assert len(entries) == 1
    entry = entries[0]

    saved = {k: direct.config_get(k)[k] for k in ("maxmemory", "maxmemory-policy")}
    saved["maxmemory-samples"] = direct.config_get("maxmemory-samples")["maxmemory-samples"]
    try:
        time.sleep(2.1)
        filler = b"x" * 64 * 1024
        for i in range(16):
            direct.set(f"filler:{i}", filler)
        time.sleep(2.1)
        direct.get(entry)  # the cached entry: most recently used
        assert _idle(direct, GENERATION) > _idle(direct, "filler:0") > _idle(direct, entry)

        direct.config_set("maxmemory-policy", "allkeys-lru")
        direct.config_set("maxmemory-samples", 64)
        used = int(direct.info("memory")["used_memory"])
        direct.config_set("maxmemory", used - 3 * len(filler))
        direct.set("trigger", b"y")  # a write: Redis evicts until it is under the limit
        assert not direct.exists(GENERATION), "the generation was not evicted"
        assert direct.exists(entry), "the cached entry was evicted too: nothing to go stale"
    finally:
        direct.config_set("maxmemory", 0)
        for key, value in saved.items():
            direct.config_set(key, value)

    assert client.patch(f"/api/v1/items/{item_id}", json={"name": "after"}).status_code == 200
    assert _name(client, item_id) == ("after", "miss")


def test_only_the_generations_live_without_a_ttl(database_url: str, redis_url: str) -> None:
    """What makes the chart's `volatile-lru` right: every key the service writes can be evicted
    (it has a TTL) except the generations, which must outlive the entries cached under them."""
    settings = make_settings(database_url=database_url, redis_url=redis_url)  # rate limit on
    with client_for(settings) as client:
        item_id = client.post("/api/v1/items", json={"name": "x"}).json()["id"]
        client.get(f"/api/v1/items/{item_id}")
        client.get("/api/v1/items")
    connection = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        ttls = {key.decode(): connection.ttl(key) for key in connection.keys("*")}
    finally:
        connection.close()
    assert {key for key, ttl in ttls.items() if ttl < 0} == {GENERATION}
    assert any(key.startswith("heliox:rl:") for key in ttls), ttls
    assert len(ttls) >= 4, ttls  # the generation, two cached reads, a rate-limit counter


def test_entries_filled_together_expire_apart_and_within_the_ttl(
    database_url: str, redis_url: str, direct: redis.Redis
) -> None:
    """Reads cached within a second get lifetimes spread over the TTL's last tenth, so they
    do not all miss at once when it runs out; none outlives CACHE_TTL_SECONDS."""
    settings = make_settings(database_url=database_url, redis_url=redis_url, cache_ttl_seconds=60)
    with client_for(settings) as client:
        ids = [client.post("/api/v1/items", json={"name": f"n{i}"}).json()["id"] for i in range(30)]
        for item_id in ids:
            assert _name(client, item_id)[1] == "miss"
    lifetimes = [direct.pttl(key) for key in direct.keys("heliox:items:g*:item:*")]
    assert len(lifetimes) == 30, lifetimes
    assert all(54_000 - 2_000 <= ms <= 60_000 for ms in lifetimes), lifetimes
    # Filled within about a second: without the spread they would lie within that second.
    assert max(lifetimes) - min(lifetimes) > 2_000, sorted(lifetimes)

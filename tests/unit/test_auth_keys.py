"""API keys on every /api/v1 route: 401 and 403 bodies, roles, expiry, revocation, the keys API,
audit lines, and no key in any log line or body (core/auth/, api/auth.py, api/keys.py)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from heliox.api.auth import Require
from heliox.app import create_app
from heliox.core.auth import keys
from heliox.core.config import Settings
from heliox.models.base import utcnow
from tests.helpers import API_KEY_HEADER, assert_error_body, client_for, create_key

ITEMS = "/api/v1/items"
OPERATIONS = [
    ("GET", ITEMS), ("POST", ITEMS), ("GET", f"{ITEMS}/1"), ("PATCH", f"{ITEMS}/1"),
    ("DELETE", f"{ITEMS}/1"), ("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys/hx_aaaaaaaaaaaa"), ("DELETE", "/api/v1/keys/hx_aaaaaaaaaaaa"),
]  # fmt: skip
CHALLENGE = 'Bearer realm="heliox"'
INVALID = 'Bearer realm="heliox", error="invalid_token"'


@pytest.fixture
def anonymous(settings: Settings) -> TestClient:
    with client_for(settings, role=None) as client:
        yield client  # type: ignore[misc]


def _as(key: str) -> dict[str, str]:
    return {API_KEY_HEADER: key}


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_api_operation_needs_a_credential(
    anonymous: TestClient, method: str, path: str
) -> None:
    response = anonymous.request(method, path, json={"name": "x", "role": "reader"})
    body = assert_error_body(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == CHALLENGE
    assert "X-API-Key" in str(body["message"])


def test_probes_and_service_info_stay_open(anonymous: TestClient) -> None:
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/health/db").status_code == 200
    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/metrics").status_code == 200  # METRICS_TOKEN unset


def test_every_api_route_requires_a_role(settings: Settings) -> None:
    """A route added under /api without the auth dependency would be open: this catches it."""
    app = create_app(settings)
    api_routes = [
        c for c in iter_route_contexts(app.routes) if (c.path_format or "").startswith("/api/")
    ]
    assert sum(len(c.methods or ()) for c in api_routes) == len(OPERATIONS)
    for context in api_routes:
        calls = set()
        stack = [context.dependant]
        while stack:
            dependant = stack.pop()
            calls |= {d.call for d in dependant.dependencies}
            stack.extend(dependant.dependencies)
        assert any(isinstance(call, Require) for call in calls), context.path_format


@pytest.mark.parametrize(
    "credential",
    [
        "not-a-key",
        "hx_short_x",
        "hx_aaaaaaaaaaaa_" + "A" * 43,  # well formed, unknown prefix
    ],
    ids=["garbage", "malformed", "unknown"],
)
def test_a_bad_key_is_401_invalid_token(anonymous: TestClient, credential: str) -> None:
    response = anonymous.get(ITEMS, headers=_as(credential))
    body = assert_error_body(response, 401, "unauthorized")
    assert body["message"] == "Invalid credential"
    assert response.headers["www-authenticate"] == INVALID
    assert credential not in response.text


def test_the_right_prefix_with_a_wrong_secret_is_refused(
    anonymous: TestClient, sqlite_url: str
) -> None:
    key = create_key(sqlite_url, "admin")
    prefix, secret = key.rsplit("_", 1)
    assert anonymous.get(ITEMS, headers=_as(key)).status_code == 200
    wrong = f"{prefix}_{secret[:-1]}{'B' if secret[-1] != 'B' else 'C'}"
    assert_error_body(anonymous.get(ITEMS, headers=_as(wrong)), 401, "unauthorized")


def test_a_repeated_credential_is_not_hashed_again(
    anonymous: TestClient, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker remembers the credential it proved for a cached key (core/auth/gate.py);
    any other secret under the same prefix is still hashed and refused."""
    key = create_key(sqlite_url, "reader")
    hashed: list[str] = []
    real_hash = keys.hash_secret
    monkeypatch.setattr(keys, "hash_secret", lambda s: hashed.append(s) or real_hash(s))
    for _ in range(5):
        assert anonymous.get(ITEMS, headers=_as(key)).status_code == 200
    assert len(hashed) == 1
    prefix, secret = key.rsplit("_", 1)
    wrong = f"{prefix}_{secret[::-1]}"
    assert_error_body(anonymous.get(ITEMS, headers=_as(wrong)), 401, "unauthorized")
    assert len(hashed) == 2
    assert anonymous.get(ITEMS, headers=_as(key)).status_code == 200


def test_a_key_works_as_a_bearer_value(anonymous: TestClient, sqlite_url: str) -> None:
    key = create_key(sqlite_url, "reader")
    assert anonymous.get(ITEMS, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_write_checks_its_credential_once(anonymous: TestClient, sqlite_url: str) -> None:
    """Require and the route's CallerDep share one check (one rate-limit hit, one cache read)."""
    key = create_key(sqlite_url, "writer")
    gate = anonymous.app.state.resources.gate  # type: ignore[attr-defined]
    admitted = []
    admit = gate.admit

    async def counting_admit(credential: str | None, address: str) -> object:
        admitted.append(credential)
        return await admit(credential, address)

    gate.admit = counting_admit
    created = anonymous.post(ITEMS, json={"name": "once"}, headers=_as(key))
    assert created.status_code == 201, created.text
    assert admitted == [key]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reader", {"read"}),
        ("writer", {"read", "write"}),
        ("admin", {"read", "write", "keys"}),
    ],
)
def test_roles(anonymous: TestClient, sqlite_url: str, role: str, allowed: set[str]) -> None:
    headers = _as(create_key(sqlite_url, role))
    answers = {
        "read": anonymous.get(ITEMS, headers=headers),
        "write": anonymous.post(ITEMS, json={"name": "by " + role}, headers=headers),
        "keys": anonymous.get("/api/v1/keys", headers=headers),
    }
    for action, response in answers.items():
        if action in allowed:
            assert response.status_code in (200, 201), (action, response.text)
            continue
        body = assert_error_body(response, 403, "forbidden")
        needed = "admin" if action == "keys" else "writer"
        assert body["details"] == {"needed": needed, "role": role}
        assert f"needs the {needed} role" in str(body["message"])
    # Each of the other write methods follows the same rule as POST.
    item = anonymous.post(ITEMS, json={"name": "i"}, headers=_as(create_key(sqlite_url, "writer")))
    for method in ("PATCH", "DELETE"):
        response = anonymous.request(
            method, f"{ITEMS}/{item.json()['id']}", json={"name": "n"}, headers=headers
        )
        assert response.status_code == (
            403 if role == "reader" else 200 if method == "PATCH" else 204
        )


def test_an_expired_key_is_refused(anonymous: TestClient, sqlite_url: str) -> None:
    past = create_key(sqlite_url, "admin", expires_at=utcnow() - timedelta(seconds=1))
    future = create_key(sqlite_url, "admin", expires_at=utcnow() + timedelta(days=1))
    response = anonymous.get(ITEMS, headers=_as(past))
    body = assert_error_body(response, 401, "unauthorized")
    assert body["message"] == "The credential has expired"
    assert response.headers["www-authenticate"] == INVALID
    assert anonymous.get(ITEMS, headers=_as(future)).status_code == 200


def test_the_keys_api_shows_a_key_once_and_revokes_it(
    anonymous: TestClient, sqlite_url: str
) -> None:
    admin = _as(create_key(sqlite_url, "admin"))
    created = anonymous.post(
        "/api/v1/keys", json={"name": "ci", "role": "writer", "expires_in_days": 30}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith(key_id + "_")
    assert (body["name"], body["role"], body["last_used_at"]) == ("ci", "writer", None)
    assert body["created_by"] == admin[API_KEY_HEADER][:15]  # the admin's prefix
    assert anonymous.post(ITEMS, json={"name": "w"}, headers=_as(key)).status_code == 201
    shown = anonymous.get(f"/api/v1/keys/{key_id}", headers=admin)
    listed = anonymous.get("/api/v1/keys", headers=admin)
    assert "key" not in shown.json()
    secret = key.rsplit("_", 1)[1]
    assert secret not in shown.text + listed.text
    assert key_id in {k["id"] for k in listed.json()["items"]}
    assert anonymous.delete(f"/api/v1/keys/{key_id}", headers=admin).status_code == 204
    # This worker refuses it at once; it is gone from the API, and listed no more.
    assert_error_body(anonymous.get(ITEMS, headers=_as(key)), 401, "unauthorized")
    assert_error_body(anonymous.get(f"/api/v1/keys/{key_id}", headers=admin), 404, "not_found")
    assert_error_body(anonymous.delete(f"/api/v1/keys/{key_id}", headers=admin), 404, "not_found")
    listed = anonymous.get("/api/v1/keys", headers=admin).json()
    assert key_id not in {k["id"] for k in listed["items"]}


def test_a_revocation_reaches_another_worker_within_the_cache_ttl(
    settings: Settings, sqlite_url: str
) -> None:
    ttl = 1.0
    fast = settings.model_copy(update={"auth_cache_seconds": ttl})
    key = create_key(sqlite_url, "reader")
    with client_for(fast) as admin, client_for(fast, role=None) as other:
        assert other.get(ITEMS, headers=_as(key)).status_code == 200  # cached in "other"
        prefix = key[:15]
        assert admin.delete(f"/api/v1/keys/{prefix}").status_code == 204
        revoked_at = time.monotonic()
        # Still cached there: the bound is the TTL, not zero.
        assert other.get(ITEMS, headers=_as(key)).status_code == 200
        while other.get(ITEMS, headers=_as(key)).status_code == 200:
            assert time.monotonic() - revoked_at < ttl + 0.5, "still accepted past the TTL"
            time.sleep(0.05)
    assert time.monotonic() - revoked_at >= ttl * 0.5


def test_last_use_is_recorded_without_a_write_per_request(
    anonymous: TestClient, sqlite_url: str
) -> None:
    key = create_key(sqlite_url, "reader")
    engine = create_engine(sqlite_url)
    writes: list[str] = []

    def last_used() -> object:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT last_used_at FROM api_keys WHERE prefix = :p"), {"p": key[:15]}
            ).scalar()

    assert last_used() is None
    from sqlalchemy import event  # noqa: PLC0415

    app_engine = anonymous.app.state.resources.db.engine  # type: ignore[attr-defined]

    @event.listens_for(app_engine, "before_cursor_execute")
    def _seen(_c: object, _cur: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            writes.append(statement)

    for _ in range(20):
        assert anonymous.get(ITEMS, headers=_as(key)).status_code == 200
    deadline = time.monotonic() + 5
    while last_used() is None and time.monotonic() < deadline:
        anonymous.get("/health")
        time.sleep(0.05)
    assert last_used() is not None
    assert len(writes) == 1, writes
    engine.dispose()


def test_writes_and_key_changes_leave_one_audit_line_each(
    anonymous: TestClient, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin_key = create_key(sqlite_url, "admin")
    headers = {**_as(admin_key), "X-Request-ID": "audit-1"}
    with caplog.at_level("INFO", logger="heliox.audit"):
        item = anonymous.post(ITEMS, json={"name": "a"}, headers=headers).json()
        anonymous.get(ITEMS, headers=headers)  # a read: no audit line
        anonymous.patch(f"{ITEMS}/{item['id']}", json={"name": "b"}, headers=headers)
        anonymous.delete(f"{ITEMS}/{item['id']}", headers=headers)
        made = anonymous.post("/api/v1/keys", json={"name": "k", "role": "reader"}, headers=headers)
        anonymous.delete(f"/api/v1/keys/{made.json()['id']}", headers=headers)
    lines = [r for r in caplog.records if r.name == "heliox.audit"]
    assert [r.action for r in lines] == [  # type: ignore[attr-defined]
        "item.create", "item.update", "item.delete", "key.create", "key.revoke"
    ]  # fmt: skip
    for record in lines:
        assert record.actor == admin_key[:15]  # type: ignore[attr-defined]
    assert lines[0].target == f"items/{item['id']}"  # type: ignore[attr-defined]
    assert lines[3].target == made.json()["id"]  # type: ignore[attr-defined]


def test_no_key_appears_in_any_log_line_or_error_body(
    anonymous: TestClient, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = create_key(sqlite_url, "admin")
    capsys.readouterr()
    made = anonymous.post("/api/v1/keys", json={"name": "k", "role": "reader"}, headers=_as(admin))
    new_key = made.json()["key"]
    wrong = admin[:-4] + "ZZZZ"
    bodies = [
        anonymous.get(ITEMS, headers=_as(new_key)).text,
        anonymous.get(ITEMS, headers=_as(wrong)).text,
        anonymous.post(ITEMS, json={"name": "x"}, headers=_as(new_key)).text,  # 403
        anonymous.get(ITEMS, headers={"Authorization": f"Bearer {wrong}"}).text,
        anonymous.delete(f"/api/v1/keys/{made.json()['id']}", headers=_as(admin)).text,
        anonymous.get(ITEMS, headers=_as(new_key)).text,  # revoked
    ]
    logged = capsys.readouterr().err
    assert "level=INFO logger=heliox.audit" in logged  # the lines were captured
    assert "credential refused" in logged
    for key in (admin, new_key, wrong):
        secret = key.rsplit("_", 1)[1]
        assert secret not in logged
        assert all(secret not in body for body in bodies)
    assert re.search(r"message=\"credential refused\".* key=hx_[a-z0-9]{12}", logged)


def test_metrics_token(settings: Settings) -> None:
    protected = settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    with client_for(protected, role=None) as client:
        refused = client.get("/metrics")
        assert_error_body(refused, 401, "unauthorized")
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200
        assert "heliox_http_requests_total" in ok.text


def test_auth_off_opens_the_api(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with client_for(settings.model_copy(update={"auth_enabled": False}), role=None) as client:
        assert client.post(ITEMS, json={"name": "open"}).status_code == 201
    assert any("AUTH_ENABLED=false" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("days", [True, "30", 0, 3651, 1.5])
def test_a_key_expiry_must_be_a_whole_number_of_days(
    anonymous: TestClient, sqlite_url: str, days: object
) -> None:
    """What the document says (integer, 1-3650): `true` is not a day (schemathesis found it)."""
    admin = _as(create_key(sqlite_url, "admin"))
    response = anonymous.post(
        "/api/v1/keys", json={"name": "n", "role": "reader", "expires_in_days": days}, headers=admin
    )
    assert_error_body(response, 422, "validation_error")
    # A JSON integer may be written 30.0 (JSON Schema's integer; schemathesis sends it).
    whole = anonymous.post(
        "/api/v1/keys", json={"name": "n", "role": "reader", "expires_in_days": 30.0}, headers=admin
    )
    assert whole.status_code == 201, whole.text

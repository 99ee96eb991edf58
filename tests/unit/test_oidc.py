"""OIDC bearer tokens against a local issuer the test starts: roles from a claim, every check
PyJWT makes, a rotated signing key, and a bounded number of JWKS fetches (core/auth/tokens.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from heliox.core.config import Settings
from tests.helpers import assert_error_body, client_for
from tests.oidc_issuer import AUDIENCE, LocalIssuer, SigningKey

ITEMS = "/api/v1/items"


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local:
        yield local


def _settings(settings: Settings, issuer: LocalIssuer, **extra: object) -> Settings:
    return Settings(
        database_url=settings.database_url,
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(settings: Settings, issuer: LocalIssuer) -> Iterator[TestClient]:
    with client_for(_settings(settings, issuer, oidc_jwks_min_refresh_seconds=0.2), role=None) as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_roles_come_from_the_claim(client: TestClient, issuer: LocalIssuer) -> None:
    writer = issuer.token(roles=["writer"])
    reader = issuer.token(roles="reader", sub="reader-1")
    nobody = issuer.token(roles=["viewer"])
    assert client.post(ITEMS, json={"name": "t"}, headers=_bearer(writer)).status_code == 201
    assert client.get(ITEMS, headers=_bearer(reader)).status_code == 200
    body = assert_error_body(
        client.post(ITEMS, json={"name": "t"}, headers=_bearer(reader)), 403, "forbidden"
    )
    assert body["details"] == {"needed": "writer", "role": "reader"}
    # A valid token whose claim names no known role may do nothing.
    body = assert_error_body(client.get(ITEMS, headers=_bearer(nobody)), 403, "forbidden")
    assert body["details"] == {"needed": "reader", "role": None}


def test_a_nested_claim_and_the_highest_role(settings: Settings, issuer: LocalIssuer) -> None:
    nested = _settings(settings, issuer, oidc_role_claim="realm_access.roles")
    with client_for(nested, role=None) as client:
        token = issuer.token(realm_access={"roles": ["offline", "reader", "admin"]})
        assert client.get("/api/v1/keys", headers=_bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "another-api"},
        {"iss": "https://elsewhere.example"},
        {"lifetime": -120},  # expired beyond the 30 s leeway
        {"sub": None},
    ],
    ids=["audience", "issuer", "expired", "no-subject"],
)
def test_tokens_that_fail_a_check_are_401(
    client: TestClient, issuer: LocalIssuer, change: dict[str, object]
) -> None:
    claims = {k: v for k, v in change.items() if k != "lifetime" and v is not None}
    token = issuer.token(lifetime=float(change.get("lifetime", 300)), roles="admin", **claims)  # type: ignore[arg-type]
    if change.get("sub", "") is None:
        import jwt  # noqa: PLC0415

        payload = jwt.decode(token, options={"verify_signature": False})
        payload.pop("sub")
        token = jwt.encode(payload, issuer.keys[-1].private, "ES256", {"kid": issuer.keys[-1].kid})
    response = client.get(ITEMS, headers=_bearer(token))
    assert_error_body(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="heliox", error="invalid_token"'


def test_a_token_signed_by_a_stranger_is_401(client: TestClient, issuer: LocalIssuer) -> None:
    stranger = SigningKey()
    forged = issuer.token(stranger, kid=issuer.keys[-1].kid, roles="admin")  # a known kid
    assert client.get(ITEMS, headers=_bearer(forged)).status_code == 401
    assert client.get(ITEMS, headers=_bearer("not.a.jwt")).status_code == 401


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    client: TestClient, issuer: LocalIssuer
) -> None:
    before = issuer.token(roles="reader")
    assert client.get(ITEMS, headers=_bearer(before)).status_code == 200
    assert issuer.jwks_fetches == 1
    old = issuer.keys[-1]
    new = issuer.rotate("RS256")  # the old key is no longer published
    time.sleep(0.25)  # past OIDC_JWKS_MIN_REFRESH_SECONDS
    after = issuer.token(new, roles="reader")
    assert client.get(ITEMS, headers=_bearer(after)).status_code == 200
    assert issuer.jwks_fetches == 2
    # A token of the retired key, not seen before, is refused now.
    retired = issuer.token(old, roles="reader", sub="someone-else")
    assert client.get(ITEMS, headers=_bearer(retired)).status_code == 401


def test_unknown_key_ids_cannot_make_a_refetch_storm(
    settings: Settings, issuer: LocalIssuer
) -> None:
    slow = _settings(settings, issuer, oidc_jwks_min_refresh_seconds=60)
    with client_for(slow, role=None) as client:
        assert client.get(ITEMS, headers=_bearer(issuer.token(roles="reader"))).status_code == 200
        for i in range(30):
            token = issuer.token(kid=f"made-up-{i}", roles="reader")
            assert client.get(ITEMS, headers=_bearer(token)).status_code == 401
    assert issuer.jwks_fetches == 1


def test_an_unreachable_issuer_is_503_not_401(settings: Settings, issuer: LocalIssuer) -> None:
    token = issuer.token(roles="reader")
    issuer.server.shutdown()
    issuer.server.server_close()
    with client_for(_settings(settings, issuer), role=None) as client:
        response = client.get(ITEMS, headers=_bearer(token))
    assert_error_body(response, 503, "service_unavailable")
    assert "retry-after" in response.headers


def test_api_keys_still_work_with_oidc_on(client: TestClient, sqlite_url: str) -> None:
    from tests.helpers import create_key  # noqa: PLC0415

    key = create_key(sqlite_url, "reader")
    assert client.get(ITEMS, headers=_bearer(key)).status_code == 200
    assert client.get(ITEMS, headers={"X-API-Key": key}).status_code == 200


def test_the_document_offers_bearer_tokens_when_oidc_is_on(
    settings: Settings, issuer: LocalIssuer
) -> None:
    from heliox.app import create_app  # noqa: PLC0415

    doc = create_app(_settings(settings, issuer)).openapi()
    assert doc["components"]["securitySchemes"]["OIDC"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from the OIDC issuer (OIDC_ISSUER, OIDC_AUDIENCE).",
    }
    assert doc["paths"][ITEMS]["get"]["security"] == [{"ApiKey": []}, {"OIDC": []}]
    plain = create_app(settings).openapi()
    assert set(plain["components"]["securitySchemes"]) == {"ApiKey"}

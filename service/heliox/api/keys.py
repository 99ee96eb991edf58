"""/api/v1/keys: API key management, for admins. Revoking is DELETE: a revoked key is gone from
the API (404 after), its row is kept for the record (``heliox-admin keys list --all``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from starlette.responses import Response

from heliox.api.auth import CallerDep, Require
from heliox.api.deps import DB
from heliox.core.audit import audit
from heliox.core.auth import store
from heliox.core.auth.roles import Role
from heliox.models.base import utcnow
from heliox.schemas.api_key import KEY_ID_PATTERN, KeyCreate, KeyCreated, KeyPage, KeyRead

router = APIRouter(
    prefix="/api/v1/keys", tags=["keys"], dependencies=[Depends(Require(Role.admin))]
)

KeyIdPath = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="The key's public prefix")]
_NOT_FOUND = "API key not found"
_JSON = "application/json"


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(data: KeyCreate, db: DB, caller: CallerDep) -> Response:
    expires = utcnow() + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    key, info = await db.run(
        lambda s: store.create(
            s, name=data.name, role=data.role, created_by=caller.identity, expires_at=expires
        )
    )
    audit(caller, "key.create", info.prefix, role=info.role.value, key_name=info.name)
    body = KeyCreated(**KeyRead.of(info).model_dump(), key=key)
    return Response(
        body.model_dump_json(),
        status_code=201,
        media_type=_JSON,
        headers={"Cache-Control": "no-store"},
    )


@router.get("", response_model=KeyPage)
async def list_keys(
    db: DB,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> KeyPage:
    found, total = await db.read(lambda c: store.listing(c, offset, limit))
    return KeyPage(items=[KeyRead.of(i) for i in found], total=total, offset=offset, limit=limit)


@router.get("/{key_id}", response_model=KeyRead)
async def get_key(key_id: KeyIdPath, db: DB) -> KeyRead:
    info = await db.read(lambda c: store.get(c, key_id))
    if info is None:
        raise HTTPException(404, _NOT_FOUND)
    return KeyRead.of(info)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: KeyIdPath, db: DB, caller: CallerDep, request: Request) -> Response:
    info = await db.run(lambda s: store.revoke(s, key_id))
    if info is None:
        raise HTTPException(404, _NOT_FOUND)
    request.app.state.resources.gate.forget(key_id)  # this worker at once, the others within
    audit(caller, "key.revoke", key_id, key_name=info.name)  # AUTH_CACHE_SECONDS
    return Response(status_code=204)

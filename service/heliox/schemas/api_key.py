"""Request and response bodies for /api/v1/keys. A key's ``id`` is its public prefix; the key
itself appears once, in the answer that created it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from heliox.core.auth.keys import PREFIX_PATTERN
from heliox.core.auth.roles import Role
from heliox.core.auth.store import KeyInfo
from heliox.schemas.text import (
    NOT_BLANK_PATTERN,
    REFUSED_TEXT,
    DocumentedText,
    refuse_unstorable,
    trim_not_blank,
)

KeyName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(refuse_unstorable),
    AfterValidator(trim_not_blank),
    DocumentedText(NOT_BLANK_PATTERN, f"{REFUSED_TEXT} Trimmed of whitespace; not blank."),
]
KEY_ID_PATTERN = f"^{PREFIX_PATTERN}$"


def _json_integer(value: object) -> object:
    """What JSON Schema calls an integer (30, 30.0), not what pydantic's lax mode also takes
    (`true`, "30"): the document says integer, and schemathesis holds the service to it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN, description="The key's public prefix")]


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci", "role": "writer", "expires_in_days": 90}]},
    )

    name: KeyName
    role: Role
    # Days rather than a date: an expiry in the past is then not expressible.
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("expires_in_days", mode="before")
    @classmethod
    def _whole_days(cls, value: object) -> object:
        return None if value is None else _json_integer(value)


class KeyRead(BaseModel):
    id: KeyId
    name: str
    role: Role
    created_by: str = Field(description="A key prefix, oidc:<subject>, heliox-admin, bootstrap")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Recorded about once a minute at most")

    @classmethod
    def of(cls, info: KeyInfo) -> KeyRead:
        return cls(
            id=info.prefix,
            name=info.name,
            role=info.role,
            created_by=info.created_by,
            created_at=info.created_at,
            expires_at=info.expires_at,
            last_used_at=info.last_used_at,
        )


class KeyCreated(KeyRead):
    key: str = Field(description="The API key: shown only in this answer, store it now")


class KeyPage(BaseModel):
    items: list[KeyRead]
    total: int
    offset: int = Field(ge=0)
    limit: int = Field(ge=1)

"""Request and response bodies for /api/v1/items."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from heliox.schemas.text import (
    NOT_BLANK_PATTERN,
    REFUSED_TEXT,
    STORABLE_PATTERN,
    DocumentedText,
    refuse_unstorable,
    trim_not_blank,
)

# Lengths apply to the value as sent (what the document's maxLength means); a name is then
# trimmed of whitespace and must keep at least one character.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(refuse_unstorable),
    AfterValidator(trim_not_blank),
    DocumentedText(NOT_BLANK_PATTERN, f"{REFUSED_TEXT} Trimmed of whitespace; not blank."),
]
Description = Annotated[
    str,
    StringConstraints(max_length=2000),
    AfterValidator(refuse_unstorable),
    DocumentedText(STORABLE_PATTERN),
]


class ItemCreate(BaseModel):
    # Examples show readers the shape, and give schemathesis' examples phase its requests.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Solar panel", "description": "400 W, mono"}]},
    )

    name: Name
    description: Description | None = None


def _not_null_in_document(schema: dict[str, Any]) -> None:
    """The document offers only the string: an explicit null is refused (see ItemUpdate)."""
    schema.pop("default", None)
    [string] = [branch for branch in schema.pop("anyOf") if branch.get("type") != "null"]
    schema.update(string)


class ItemUpdate(BaseModel):
    """Partial update: only the fields sent are changed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "450 W, mono"}, {"name": "Inverter"}]},
    )

    # Optional, not nullable: pydantic's nullable type keeps one error per refused string.
    name: Name | None = Field(default=None, json_schema_extra=_not_null_in_document)
    description: Description | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        # Omit the field to keep the name; an explicit null is a mistake.
        if value is None:
            raise ValueError("name cannot be null")
        return value


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    offset: int = Field(ge=0)
    limit: int = Field(ge=1)
